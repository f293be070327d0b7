// Entry points of the CUDA kernels, declared without CUDA/CuTe headers beyond the runtime API
// so the registry and the torch bindings compile quickly.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/params.h"

namespace adaspa {

// Kernel path: which family of kernels runs a tuple. kPortable: the _sm80 kernels (every GPU the
// build targets); kHopper: the _sm90 kernels (TMA, wgmma; compute capability 9.0 only).
enum class KernelPath : int { kPortable = 0, kHopper = 1 };

// The launchers of each path (launch_sm80.h, launch_sm90.h), explicitly instantiated once per
// tuple of csrc/instantiations.txt (generated files). A launcher runs one kernel on the stream.
template <Kernel kKernel, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_sm80(const AttnParams& params, cudaStream_t stream);
template <Kernel kKernel, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_sm90(const AttnParams& params, cudaStream_t stream);

using KernelLauncher = cudaError_t (*)(const AttnParams&, cudaStream_t);

struct KernelEntry {
  Kernel kernel;
  KernelPath path;
  DType dtype;
  int head_dim;
  int block_size;
  KernelLauncher launch;
};

// Generated registry of compiled tuples (kernel_registry.cu).
extern const KernelEntry kAttentionKernels[];
extern const int kNumAttentionKernels;

cudaError_t run_select(const SelectParams& params, cudaStream_t stream);
cudaError_t run_mask_to_idx(const MaskIdxParams& params, cudaStream_t stream);

}  // namespace adaspa

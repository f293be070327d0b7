// Entry points of the CUDA kernels, declared without CUDA/CuTe headers beyond the runtime API
// so the registry and the torch bindings compile quickly.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/params.h"

namespace adaspa {

// Explicitly instantiated once per tuple of csrc/instantiations.txt (generated files).
template <Mode kMode, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_attention(const AttnParams& params, cudaStream_t stream);

using AttentionLauncher = cudaError_t (*)(const AttnParams&, cudaStream_t);

struct KernelEntry {
  Mode mode;
  DType dtype;
  int head_dim;
  int block_size;
  AttentionLauncher launch;
};

// Generated registry of compiled tuples (kernel_registry.cu).
extern const KernelEntry kAttentionKernels[];
extern const int kNumAttentionKernels;

cudaError_t run_select(const SelectParams& params, cudaStream_t stream);

}  // namespace adaspa

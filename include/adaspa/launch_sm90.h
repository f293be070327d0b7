// Launcher of the sm90 (hopper path) kernels; the generated per-tuple files instantiate it for
// the _sm90 lines of csrc/instantiations.txt, which are built only for a 9.0a target.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/flash_kernel_sm90.h"
#include "adaspa/launch.h"
#include "adaspa/params.h"

namespace adaspa {

template <Kernel kKernel, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_sm90(const AttnParams& params, cudaStream_t stream) {
  static_assert(kKernel == Kernel::kFlashSparse, "the hopper path has the sparse flash kernel only so far");
  return sm90::run_flash_sparse<ElementOf<kDType>, kHeadDim, kBlockSize>(params, stream);
}

}  // namespace adaspa

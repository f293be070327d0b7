// Launcher of the sm80 kernels; the generated per-tuple files instantiate it (csrc/instantiations.txt).
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/flash_kernel_sm80.h"
#include "adaspa/kernel_traits_sm80.h"
#include "adaspa/launch.h"
#include "adaspa/params.h"
#include "adaspa/score_kernel_sm80.h"
#include "adaspa/tile_scheduler.h"
#include "adaspa/tile_sizes.h"

namespace adaspa {

template <Kernel kKernel, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_sm80(const AttnParams& params, cudaStream_t stream) {
  using Traits = KernelTraitsSm80<TileSizesSm80<kKernel, kHeadDim, kBlockSize>, ElementOf<kDType>>;
  const dim3 grid = attention_grid<Traits::kBlockM>(params);
  if constexpr (kKernel == Kernel::kScore) {
    return launch_kernel(&score_kernel<Traits>, grid, Traits::kNThreads, Traits::kSmemBytes, stream, params);
  } else {
    return launch_kernel(&flash_kernel<Traits, kKernel == Kernel::kFlashSparse>, grid, Traits::kNThreads,
                         Traits::kSmemBytes, stream, params);
  }
}

}  // namespace adaspa

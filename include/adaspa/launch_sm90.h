// Launcher of the sm90 (hopper path) kernels; the generated per-tuple files instantiate it for
// the _sm90 lines of csrc/instantiations.txt, which are built only for a 9.0a target.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/flash_kernel_sm90.h"
#include "adaspa/flash_kernel_sm90_wide.h"
#include "adaspa/launch.h"
#include "adaspa/params.h"
#include "adaspa/score_kernel_sm90.h"

namespace adaspa {

template <Kernel kKernel, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_sm90(const AttnParams& params, cudaStream_t stream) {
  using Element = ElementOf<kDType>;
  if constexpr (kKernel == Kernel::kScore) {
    // Four warpgroups per CTA where the grid fills the SMs: run_block_scores (score_kernel_sm90.h)
    // says when and why.
    return sm90::run_block_scores<Element, kHeadDim, kBlockSize>(params, stream);
  } else if constexpr (kKernel == Kernel::kFlashSearch) {
    // Lazy rescaling of O: 1.00-1.02x on an H200 (D 64 / 128, block 64 / 128, 32K and 119K);
    // the block-lse stores after the hand-over of the tensor cores (flash_kernel_sm90.h).
    // The early softmax at D 128: 1.02-1.06x on an H200 (block 64 and 128); at D 64 1.00x.
    return sm90::run_flash_search<Element, kHeadDim, kBlockSize, true, kHeadDim == 128>(params, stream);
  } else if constexpr (kKernel == Kernel::kFlashSparse && kBlockSize == 64) {
    // Key tiles of two listed blocks (flash_kernel_sm90_wide.h), O rescaled lazily (softmax.h,
    // online_softmax_update): at D 128 1.00-1.07x eager rescaling on an H200, median 1.02x. At
    // D 64 bounded to three CTAs per SM (128 registers; 16 bytes spill outside the main loop):
    // 1.02-1.07x the 64-wide kernel at four CTAs on an H200.
    return sm90::run_flash_sparse_wide<Element, kHeadDim, kBlockSize, true, kHeadDim == 64 ? 3 : 2>(params, stream);
  } else if constexpr (kKernel == Kernel::kFlashSparse && kBlockSize == 128 && kHeadDim == 64) {
    // The wide kernel over 64-row halves of each query block, a key tile = one listed block,
    // three CTAs per SM: 1.03-1.21x the ping-pong on an H200 (32K tokens, density 0.1-0.5); the
    // two halves as a cluster sharing each K / V tile (TMA multicast) 1.00-1.06x more. At D 128
    // these measured 0.87-0.93x and 0.94-0.99x, so the ping-pong stays there.
    return sm90::run_flash_sparse_wide<Element, kHeadDim, kBlockSize, true, 3>(params, stream);
  } else if constexpr (kKernel == Kernel::kFlashSparse && kBlockSize == 128) {
    // O rescaled lazily: 1.04x at D 128 on an H200; the early softmax 1.00-1.04x. Q K^T with Q in
    // registers (kQRegs: wgmma RS, Q read from shared memory once per CTA): 1.004-1.011x at the
    // power limit on an H200 (32K, density 0.1 and 0.5), 168 registers, no spills.
    return sm90::run_flash<Element, kHeadDim, kBlockSize, false, true, true, 0, 2, true, true>(params, stream);
  } else {
    return sm90::run_flash<Element, kHeadDim, kBlockSize, kKernel == Kernel::kFlashDense>(params, stream);
  }
}

}  // namespace adaspa

// Launch template of the attention kernel; the generated per-tuple files instantiate it.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/attention_api.h"
#include "adaspa/fwd_kernel.h"

namespace adaspa {

template <DType kDType>
using ElementOf = std::conditional_t<kDType == DType::kFloat16, cutlass::half_t, cutlass::bfloat16_t>;

template <Mode kMode, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t launch_attention(const AttnParams& params, cudaStream_t stream) {
  // sparse_attn: one query block per CTA, since every query block walks its own idx row.
  // The dense passes visit every key block, so two 64-row query blocks share one 128-row CTA:
  // each K (and V) tile read from L2 feeds twice the rows.
  constexpr int kBlockM = kMode == Mode::kSparse ? kBlockSize : 128;
  using Traits = AttnTraits<kHeadDim, kBlockSize, kBlockM, ElementOf<kDType>>;
  auto kernel = &attention_kernel<Traits, kMode>;
  constexpr int smem = Traits::smem_bytes(kMode);
  if constexpr (smem >= 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
  }
  const int m_tiles = (params.nq + kBlockM - 1) / kBlockM;
  const dim3 grid(m_tiles, params.heads, params.batch);
  kernel<<<grid, Traits::kNThreads, smem, stream>>>(params);
  return cudaGetLastError();
}

// attn_search: the dense flash launch (out, lse), then the score launch reading that lse, both on
// the caller's stream. One fused launch (flash pass, then score pass in the same CTA) ran its
// score pass at the flash pass's occupancy (2 CTAs / SM, 230-255 registers) instead of the score
// kernel's 3. On an H100 the two were within 1 % at D 128, and the fused launch 7-11 % slower at
// D 64 (1.60-1.68x sparse_attn at density 1, against 1.50-1.52x; NOTES.md, 2026-11-27 session 5).
template <Mode kMode, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_attention(const AttnParams& params, cudaStream_t stream) {
  if constexpr (kMode == Mode::kSearch) {
    const cudaError_t err = launch_attention<Mode::kSearch, kDType, kHeadDim, kBlockSize>(params, stream);
    if (err != cudaSuccess) return err;
    return launch_attention<Mode::kScore, kDType, kHeadDim, kBlockSize>(params, stream);
  } else {
    return launch_attention<kMode, kDType, kHeadDim, kBlockSize>(params, stream);
  }
}

}  // namespace adaspa

// Launch template of the attention kernel; the generated per-tuple files instantiate it.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/attention_api.h"
#include "adaspa/fwd_kernel.h"

namespace adaspa {

template <DType kDType>
using ElementOf = std::conditional_t<kDType == DType::kFloat16, cutlass::half_t, cutlass::bfloat16_t>;

template <Mode kMode, DType kDType, int kHeadDim, int kBlockSize>
cudaError_t run_attention(const AttnParams& params, cudaStream_t stream) {
  // sparse_attn: one query block per CTA, since every query block walks its own idx row.
  // attn_search / block_scores visit every key block, so two 64-row query blocks share one
  // 128-row CTA: each K (and V) tile read from L2 feeds twice the rows. With 64-row CTAs the
  // L2 -> SM traffic (~5 TB/s at 310 TF/s, D = 128) is what holds the kernel back.
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

}  // namespace adaspa

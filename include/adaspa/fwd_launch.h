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
  using Traits = AttnTraits<kHeadDim, kBlockSize, ElementOf<kDType>>;
  auto kernel = &attention_kernel<Traits, kMode>;
  constexpr int smem = Traits::kSmemBytes;
  if constexpr (smem >= 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(params.mq, params.heads, params.batch);
  kernel<<<grid, Traits::kNThreads, smem, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace adaspa

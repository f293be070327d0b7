// Kernel launch shared by the launchers of every arch.
#pragma once

#include <cuda_runtime_api.h>
#include <cutlass/numeric_types.h>

#include <type_traits>

#include "adaspa/params.h"

namespace adaspa {

template <DType kDType>
using ElementOf = std::conditional_t<kDType == DType::kFloat16, cutlass::half_t, cutlass::bfloat16_t>;

// Opt in to more than 48 KB of dynamic shared memory where asked for, launch on the caller's
// stream, report a launch error.
template <typename KernelFn>
cudaError_t launch_kernel(KernelFn kernel, dim3 grid, int threads, int smem_bytes, cudaStream_t stream,
                          const AttnParams& params) {
  if (smem_bytes >= 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, threads, smem_bytes, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace adaspa

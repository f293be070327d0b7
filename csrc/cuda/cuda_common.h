// Helpers shared by the CUDA bindings: launch-error reporting and input alignment.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "build_info.h"
#include "error.h"
#include "torch_api.h"

namespace adaspa {

inline void check_launch(cudaError_t err, const char* op) {
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
    int dev = 0;
    cudaDeviceProp prop{};
    cudaGetDevice(&dev);
    cudaGetDeviceProperties(&prop, dev);
    ADASPA_CHECK(false, "adaspa.", op, ": this build has no kernel image for ", prop.name, " (sm_", prop.major,
                prop.minor, "); it was compiled for TORCH_CUDA_ARCH_LIST=\"", ADASPA_CUDA_ARCHS,
                "\". Rebuild with that list including ", prop.major, ".", prop.minor, ".");
  }
  ADASPA_CHECK(err == cudaSuccess, "adaspa.", op, ": CUDA error: ", cudaGetErrorString(err));
}

// The kernels move 16-byte vectors: the base must be 16-byte aligned and every batch / head /
// row stride (of a dim longer than 1) a multiple of 8 elements. Anything else is copied once.
inline bool is_vector_aligned(const Tensor& t) {
  bool ok = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int d = 0; d < 3; ++d) ok = ok && (t.size(d) <= 1 || t.stride(d) % 8 == 0);
  return ok;
}

inline Tensor vector_aligned(const Tensor& t) { return is_vector_aligned(t) ? t : tapi::contiguous(t); }

}  // namespace adaspa

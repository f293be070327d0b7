// Which key block next: the rule every kernel (CPU and CUDA) applies to an idx row.
// An entry is visited iff it lies in [0, mk) and is strictly greater than the last visited
// entry. An ascending, duplicate-free list (the documented contract) is visited exactly;
// -1 padding, out-of-range values and duplicates are skipped, so no input can make a kernel
// read outside K / V or count a block twice.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define ADASPA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ADASPA_HOST_DEVICE inline
#endif

namespace adaspa {

ADASPA_HOST_DEVICE bool block_accepted(int32_t entry, int32_t last, int mk) {
  return entry >= 0 && entry < mk && entry > last;
}

}  // namespace adaspa

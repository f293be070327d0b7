// Pieces of select_blocks shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "adaspa/block_list.h"

namespace adaspa {

// Order-preserving map float -> uint32 (larger float, larger key; +NaN above +inf), so top-k
// works on integer keys and ties are exact.
ADASPA_HOST_DEVICE uint32_t order_key(float x) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(x);
#else
  std::memcpy(&u, &x, sizeof(u));
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// keep[h] as the kernel uses it: clamped to what a row can hold.
ADASPA_HOST_DEVICE int clamp_keep(int32_t keep, int candidates) {
  return keep < 0 ? 0 : (keep > candidates ? candidates : keep);
}

}  // namespace adaspa

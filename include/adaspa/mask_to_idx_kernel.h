// mask_to_idx on the GPU: one warp per output row, 32 key blocks per step. Each lane tests one
// bit; a ballot and a popcount of the lower lanes give every set bit its slot, so the row is
// written in ascending order with coalesced stores and no shared memory. The warp stops once
// `width` blocks are out, then pads with -1. Text query blocks get every key block.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/mask_to_idx.h"
#include "adaspa/params.h"

namespace adaspa {

constexpr int kMaskIdxWarps = 8;

__global__ void __launch_bounds__(kMaskIdxWarps * 32) mask_to_idx_kernel(const __grid_constant__ MaskIdxParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kMaskIdxWarps + threadIdx.x / 32;
  if (row >= p.rows) return;  // whole warp leaves together; no CTA-wide barrier below
  int32_t* out = p.idx + row * p.out_width;
  const int64_t src = mask_source_row(p, row);
  int n = 0;
  if (src < 0) {
    for (int j = lane; j < p.mk; j += 32) out[j] = j;
    n = p.mk;
  } else {
    const uint8_t* bits = p.packed + src * p.nbytes;
    const unsigned lower_lanes = (1u << lane) - 1u;
    for (int j0 = 0; j0 < p.mk && n < p.width; j0 += 32) {  // n is warp-uniform
      const int j = j0 + lane;
      const bool set = j < p.mk && ((__ldg(bits + (j >> 3)) >> (j & 7)) & 1u);
      const unsigned ballot = __ballot_sync(0xffffffffu, set);
      const int slot = n + __popc(ballot & lower_lanes);
      if (set && slot < p.width) out[slot] = j;
      n += __popc(ballot);
    }
    n = min(n, p.width);
  }
  for (int t = n + lane; t < p.out_width; t += 32) out[t] = -1;
}

inline cudaError_t launch_mask_to_idx(const MaskIdxParams& params, cudaStream_t stream) {
  if (params.rows == 0) return cudaSuccess;
  const int64_t blocks = (params.rows + kMaskIdxWarps - 1) / kMaskIdxWarps;
  mask_to_idx_kernel<<<static_cast<unsigned>(blocks), kMaskIdxWarps * 32, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace adaspa

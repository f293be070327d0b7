// select_blocks on the GPU: one warp per (b, h, query block) row. A 4-pass radix select on
// order-preserving integer keys finds the keep[h]-th largest non-forced score exactly; one more
// pass emits the kept blocks in ascending order (ties at the threshold go to the lower block
// index, as on the CPU), the forced blocks, -1 padding and the kept share of the row's mass.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/params.h"
#include "adaspa/select_common.h"

namespace adaspa {

constexpr int kSelectWarps = 4;

__device__ __forceinline__ bool is_forced(const uint8_t* forced, int j) { return forced != nullptr && forced[j]; }

__global__ void __launch_bounds__(kSelectWarps * 32) select_kernel(const __grid_constant__ SelectParams p) {
  __shared__ int hist_all[kSelectWarps][256];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kSelectWarps + warp;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.mq;
  if (row >= rows) return;  // whole warp leaves together; no CTA-wide barrier below
  int* hist = hist_all[warp];
  const int mk = p.mk;
  const int h = static_cast<int>((row / p.mq) % p.heads);
  const float* s = p.scores + row * mk;
  const unsigned lt_mask = (1u << lane) - 1u;

  int n_forced = 0;
  for (int j0 = 0; j0 < mk; j0 += 32) {
    const int j = j0 + lane;
    n_forced += __popc(__ballot_sync(0xffffffffu, j < mk && is_forced(p.forced, j)));
  }
  const int k = clamp_keep(__ldg(p.keep + h), mk - n_forced);
  const bool take_all = k == mk - n_forced;

  // Radix select: after the passes, `thresh` is the k-th largest candidate key and `ties` how
  // many candidates equal to it are kept.
  uint32_t thresh = 0, prefix_mask = 0;
  int ties = k;
  if (k > 0 && !take_all) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = lane; i < 256; i += 32) hist[i] = 0;
      __syncwarp();
      for (int j = lane; j < mk; j += 32) {
        if (is_forced(p.forced, j)) continue;
        const uint32_t key = order_key(s[j]);
        if ((key & prefix_mask) == thresh) atomicAdd(&hist[(key >> shift) & 255u], 1);
      }
      __syncwarp();
      int c[8], lane_total = 0;
#pragma unroll
      for (int e = 0; e < 8; ++e) lane_total += (c[e] = hist[lane * 8 + e]);
      // suffix[l] = candidates in bins of lanes >= l
      int suffix = lane_total;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int other = __shfl_down_sync(0xffffffffu, suffix, o);
        if (lane + o < 32) suffix += other;
      }
      const int above_lane = suffix - lane_total;
      const unsigned hit = __ballot_sync(0xffffffffu, suffix >= ties && above_lane < ties);
      const int src = __ffs(hit) - 1;
      int digit = 0, above = 0;
      if (lane == src) {
        int run = above_lane;
#pragma unroll
        for (int e = 7; e >= 0; --e) {
          if (run + c[e] >= ties) {
            digit = lane * 8 + e;
            above = run;
            break;
          }
          run += c[e];
        }
      }
      digit = __shfl_sync(0xffffffffu, digit, src);
      above = __shfl_sync(0xffffffffu, above, src);
      ties -= above;
      thresh |= static_cast<uint32_t>(digit) << shift;
      prefix_mask |= 255u << shift;
      __syncwarp();  // hist is cleared again by the next pass
    }
  }

  // Emit in ascending block order.
  int32_t* idx = p.idx + row * mk;
  int count = 0, ties_seen = 0;
  float kept = 0.f, total = 0.f;
  for (int j0 = 0; j0 < mk; j0 += 32) {
    const int j = j0 + lane;
    const float v = j < mk ? s[j] : 0.f;
    const bool forced = j < mk && is_forced(p.forced, j);
    const bool cand = j < mk && !forced;
    const uint32_t key = order_key(v);
    // Ties at the threshold: the first `ties` of them in block order.
    const bool is_tie = cand && k > 0 && !take_all && key == thresh;
    const unsigned tie_bits = __ballot_sync(0xffffffffu, is_tie);
    bool sel = forced || (cand && (take_all || (k > 0 && key > thresh)));
    if (is_tie) sel = ties_seen + __popc(tie_bits & lt_mask) < ties;
    ties_seen += __popc(tie_bits);
    const unsigned sel_bits = __ballot_sync(0xffffffffu, sel);
    if (sel) idx[count + __popc(sel_bits & lt_mask)] = j;
    count += __popc(sel_bits);
    total += v;
    kept += sel ? v : 0.f;
  }
  for (int t = count + lane; t < mk; t += 32) idx[t] = -1;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    total += __shfl_xor_sync(0xffffffffu, total, o);
    kept += __shfl_xor_sync(0xffffffffu, kept, o);
  }
  if (lane == 0) p.kept_mass[row] = total != 0.f ? kept / total : 0.f;
}

inline cudaError_t launch_select(const SelectParams& params, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(params.batch) * params.heads * params.mq;
  if (rows == 0) return cudaSuccess;
  const int64_t blocks = (rows + kSelectWarps - 1) / kSelectWarps;
  select_kernel<<<static_cast<unsigned>(blocks), kSelectWarps * 32, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace adaspa

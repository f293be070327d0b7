// Online softmax of the flash kernels, on the (row, col) view of the S and O accumulators: row mi
// is the mi-th row this thread holds. The threads holding one row are a quad of consecutive lanes
// (in the mma.sync m16n8 and the wgmma accumulator layouts alike), reduced with quad_max / quad_sum.
#pragma once

#include <cute/tensor.hpp>

#include <cmath>

#include "adaspa/utils.h"

namespace adaspa {

constexpr float kLog2e = 1.4426950408889634f;
// The running max moves only when a row's max grows by more than this (log2 units).
constexpr float kRescaleLog2 = 8.f;

// Row mi of an S tile -> P = exp2(s * scale_log2 - offset) in place; parts[j]: this thread's sum
// of P over the j-th of kParts equal column ranges (the one-pass attn_search keeps a sum per key
// block of a wider tile). Returns the row's sum over this thread's columns. Shared by the portable
// and the hopper softmax.
template <int kParts, typename TensorS>
__device__ __forceinline__ float exp_row(TensorS& s_rc, int mi, float scale_log2, float offset,
                                         float (&parts)[kParts]) {
  constexpr int kCols = decltype(cute::size<1>(s_rc))::value;
  static_assert(kCols % kParts == 0);
  float sum[kParts];
#pragma unroll
  for (int j = 0; j < kParts; ++j) sum[j] = 0.f;
#pragma unroll
  for (int nj = 0; nj < kCols; ++nj) {
    const float e = exp2_approx(s_rc(mi, nj) * scale_log2 - offset);
    s_rc(mi, nj) = e;
    sum[nj / (kCols / kParts)] += e;
  }
  float total = sum[0];
#pragma unroll
  for (int j = 0; j < kParts; ++j) {
    parts[j] = sum[j];
    if (j > 0) total += sum[j];
  }
  return total;
}

// One S tile: S -> P = exp2(s * scale_log2 - running max) in place, row sums accumulated, O
// rescaled when the running max moves. row_max / row_sum: the running state of this thread's rows
// (start: -inf / 0). Every visited tile has at least one valid column per row, so the running max
// is finite after the first tile and exp2(-inf - max) = 0 for the rest.
// The running max (and with it O and the row sums) only moves when the max of some row of the warp
// grew by more than kRescaleLog2 (after scaling): otherwise P = exp2(s - stale max) <= 2^8, which
// fp32 sums and bf16 / fp16 P hold as precisely (FlashAttention-4's conditional rescaling). After
// the first tiles the rescale of O (D / 2 multiplies per row and thread) is skipped. The test needs
// no quad reduction: row_max is the same in the four threads of a row, so "some thread's own max
// grew past it" is "the row's max grew past it".
// parts[mi]: exp_row's part sums of row mi; the overload without parts is the same arithmetic.
template <int kParts, int kRows, typename TensorS, typename TensorO>
__device__ __forceinline__ void online_softmax_update(float (&row_max)[kRows], float (&row_sum)[kRows], TensorS& s_rc,
                                                      TensorO& o_rc, float scale_log2, float (&parts)[kRows][kParts]) {
  using cute::size;
  float mx[kRows];
  bool grow = false;
#pragma unroll
  for (int mi = 0; mi < kRows; ++mi) {
    float m = row_max[mi];
#pragma unroll
    for (int nj = 0; nj < size<1>(s_rc); ++nj) m = fmaxf(m, s_rc(mi, nj));
    mx[mi] = m;
    grow |= (m - row_max[mi]) * scale_log2 > kRescaleLog2;
  }
  if (__any_sync(0xffffffffu, grow)) {  // warp-uniform
#pragma unroll
    for (int mi = 0; mi < kRows; ++mi) {
      const float m = quad_max(mx[mi]);
      const float correction = exp2_approx((row_max[mi] - m) * scale_log2);
      row_max[mi] = m;
      row_sum[mi] *= correction;
#pragma unroll
      for (int nj = 0; nj < size<1>(o_rc); ++nj) o_rc(mi, nj) *= correction;
    }
  }
#pragma unroll
  for (int mi = 0; mi < kRows; ++mi) row_sum[mi] += exp_row(s_rc, mi, scale_log2, row_max[mi] * scale_log2, parts[mi]);
}

template <int kRows, typename TensorS, typename TensorO>
__device__ __forceinline__ void online_softmax_update(float (&row_max)[kRows], float (&row_sum)[kRows], TensorS& s_rc,
                                                      TensorO& o_rc, float scale_log2) {
  float unused[kRows][1];
  online_softmax_update<1>(row_max, row_sum, s_rc, o_rc, scale_log2, unused);
}

// The end of a row: its sum over the quad -> 1 / sum and the natural-log lse. A row that visited
// no key (sum 0) gets 0 and -inf.
struct SoftmaxRowResult {
  float inv, lse;
};
__device__ __forceinline__ SoftmaxRowResult softmax_row_result(float row_sum, float row_max, float scale) {
  const float sum = quad_sum(row_sum);
  return {sum > 0.f ? 1.f / sum : 0.f, sum > 0.f ? row_max * scale + __logf(sum) : -INFINITY};
}

}  // namespace adaspa

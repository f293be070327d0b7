// Score reduction of the score kernel: exp(scale * s - lse) of an S tile summed per (query block,
// key block), on the (row, col) view of the S accumulator.
#pragma once

#include <cute/tensor.hpp>

#include <cstdint>

#include "adaspa/utils.h"

namespace adaspa {

// partial[qb] += exp2(s * scale_log2 - lse_log2) over this thread's rows of query block qb and
// its columns. qblock_of(mi): the query block (within the CTA) of this thread's row mi.
template <int kQBlocks, int kRows, typename TensorS, typename QBlockOf>
__device__ __forceinline__ void add_block_scores(float (&partial)[kQBlocks], TensorS const& s_rc,
                                                 const float (&lse_log2)[kRows], float scale_log2,
                                                 QBlockOf qblock_of) {
#pragma unroll
  for (int mi = 0; mi < kRows; ++mi) {
    const int qb = qblock_of(mi);
#pragma unroll
    for (int nj = 0; nj < cute::size<1>(s_rc); ++nj) partial[qb] += exp2_approx(s_rc(mi, nj) * scale_log2 - lse_log2[mi]);
  }
}

// Per-warp sums of each key tile, for the key blocks being reduced (two in flight):
// [key block & 1][tile of the block][query block][warp].
template <int kTilesPerBlock, int kQBlocks, int kNWarps>
using WarpPartials = float[2][kTilesPerBlock][kQBlocks][kNWarps];

// One key tile's partials -> shared memory, reset. Every tile is reduced on its own (a block-128
// key block is two tiles): carrying sums across tiles made ptxas keep far more registers live.
template <int kT, int kQ, int kNWarps>
__device__ __forceinline__ void store_tile_partials(WarpPartials<kT, kQ, kNWarps>& warp_partial, float (&partial)[kQ],
                                                    int tile, int lane, int warp) {
#pragma unroll
  for (int qb = 0; qb < kQ; ++qb) {
    const float w = warp_sum(partial[qb]);
    if (lane == 0) warp_partial[(tile / kT) & 1][tile % kT][qb][warp] = w;
    partial[qb] = 0.f;
  }
}

// Key block blk summed over its tiles' and the warps' partials into scores[qb * mk + blk], by warp
// blk % kNWarps, lane qb for query block qb: the duty rotates over the warps, which sit on
// different schedulers (with thread 0 alone doing it, one scheduler carried it for every tile of
// every CTA on the SM). scores: the CTA's first query block's row; q_blocks: its valid query blocks.
// lane: threadIdx.x % 32.
template <int kT, int kQ, int kNWarps>
__device__ __forceinline__ void finalize_block_scores(const WarpPartials<kT, kQ, kNWarps>& warp_partial, float* scores,
                                                      int mk, int ntiles, int q_blocks, int blk, int lane) {
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if (warp != blk % kNWarps || lane >= q_blocks) return;
  const int tiles = min(kT, ntiles - blk * kT);
  float s = 0.f;
#pragma unroll
  for (int u = 0; u < kT; ++u) {
    if (u < tiles) {
#pragma unroll
      for (int w = 0; w < kNWarps; ++w) s += warp_partial[blk & 1][u][lane][w];
    }
  }
  scores[static_cast<int64_t>(lane) * mk + blk] = s;
}

}  // namespace adaspa

// Longest list first: the order in which the sparse kernel's CTAs take their query tiles.
//
// Why: a CTA's time is proportional to the length of its idx row, and rows differ by 3x (the
// head-adaptive tiers) to 10x and more (text query rows list every key block). The hardware
// hands out CTAs in launch order, so with tiles in (m, h, b) order the longest rows of the last
// head start at the very end of the grid and run alone while the GPU idles around them. Launched
// longest first, the short rows fill the last wave instead (list scheduling, LPT).
//
// How: three small kernels before the sparse launch, on its stream (no host sync, graph
// capturable), into a scratch buffer of tile_order_ints(p) int32. A row's work is its entries in
// [0, mk) (an estimate: duplicates and entries the visit rule skips count too; results do not
// depend on the order), quantised to kOrderBins levels of kmax. The sort is a stable counting
// sort: rows of equal work keep their (m, h, b) order, so the CTAs of one head still run as
// neighbours and share its K / V in L2 (an order scrambled within equal work measured 2-10 %
// slower than launch order on an H200, NOTES.md).
//   tile_bins     one CTA per chunk of kOrderChunk rows (a warp per row): each row's bin, and
//                 the chunk's histogram of bins;
//   tile_starts   one CTA: each (chunk, bin)'s first position in the order (bins descending,
//                 chunks ascending), in place of the histograms;
//   tile_scatter  one warp per chunk, rows in order: order[start + rank] = row.
// Buffer layout: order [rows] | bin [rows] | histograms / starts [chunks x kOrderBins].
// The kernel then computes tile order[blockIdx.x] (tile_scheduler.h, linear_cta_tile).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "adaspa/params.h"

namespace adaspa {

// Idx rows = sparse-kernel tiles (one query block per CTA on the hopper path).
constexpr int kOrderBins = 64, kOrderChunk = 1024;
inline int64_t tile_rows(const AttnParams& p) { return int64_t(p.batch) * p.heads * p.mq; }
inline int64_t tile_chunks(const AttnParams& p) { return (tile_rows(p) + kOrderChunk - 1) / kOrderChunk; }
inline int64_t tile_order_ints(const AttnParams& p) { return 2 * tile_rows(p) + tile_chunks(p) * kOrderBins; }

#ifdef __CUDACC__
namespace order_detail {

constexpr int kThreads = 256;

// Templates (never instantiated with another argument) so that every file including this header
// shares one definition.
template <int kDummy = 0>
__global__ void __launch_bounds__(kThreads) tile_bins_kernel(const int32_t* idx, int64_t rows, int kmax, int mk,
                                                             int32_t* bin, int32_t* hist) {
  __shared__ int32_t h[kOrderBins];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int i = threadIdx.x; i < kOrderBins; i += kThreads) h[i] = 0;
  __syncthreads();
  const int64_t first = int64_t(blockIdx.x) * kOrderChunk;
  const int64_t last = first + kOrderChunk < rows ? first + kOrderChunk : rows;
  for (int64_t r = first + warp; r < last; r += kThreads / 32) {
    const int32_t* row = idx + r * kmax;
    int n = 0;
    for (int j = lane; j < kmax; j += 32) {
      const int32_t e = __ldg(row + j);
      n += e >= 0 && e < mk;
    }
    for (int o = 16; o > 0; o /= 2) n += __shfl_xor_sync(0xffffffffu, n, o);
    if (lane == 0) {
      const int b = static_cast<int>(int64_t(n) * (kOrderBins - 1) / kmax);
      bin[r] = b;
      atomicAdd(h + b, 1);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kOrderBins; i += kThreads) hist[int64_t(blockIdx.x) * kOrderBins + i] = h[i];
}

// hist[c][b] (rows of chunk c in bin b) -> the position in the order of the first of them: all
// rows of higher bins, then those of bin b in lower chunks. One CTA, a thread per bin.
template <int kDummy = 0>
__global__ void __launch_bounds__(kOrderBins) tile_starts_kernel(int32_t* hist, int64_t chunks) {
  __shared__ int32_t total[kOrderBins];
  const int b = threadIdx.x;
  int32_t t = 0;
  for (int64_t c = 0; c < chunks; ++c) t += hist[c * kOrderBins + b];
  total[b] = t;
  __syncthreads();
  int32_t run = 0;
  for (int i = b + 1; i < kOrderBins; ++i) run += total[i];
  for (int64_t c = 0; c < chunks; ++c) {
    const int32_t n = hist[c * kOrderBins + b];
    hist[c * kOrderBins + b] = run;
    run += n;
  }
}

// One warp per chunk, 32 rows at a time in row order: a row's place is its (chunk, bin) start
// plus the rows of its bin before it in the chunk.
template <int kDummy = 0>
__global__ void __launch_bounds__(32) tile_scatter_kernel(const int32_t* bin, int64_t rows, const int32_t* start,
                                                          int32_t* order) {
  __shared__ int32_t next[kOrderBins];
  const int lane = threadIdx.x;
  for (int i = lane; i < kOrderBins; i += 32) next[i] = start[int64_t(blockIdx.x) * kOrderBins + i];
  __syncwarp();
  const int64_t first = int64_t(blockIdx.x) * kOrderChunk;
  const int64_t last = first + kOrderChunk < rows ? first + kOrderChunk : rows;
  for (int64_t r0 = first; r0 < last; r0 += 32) {
    const int64_t r = r0 + lane;
    const int b = r < last ? bin[r] : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, b);
    if (b >= 0) order[next[b] + __popc(peers & ((1u << lane) - 1))] = static_cast<int32_t>(r);
    __syncwarp();
    if (b >= 0 && lane == __ffs(peers) - 1) next[b] += __popc(peers);
    __syncwarp();
  }
}

}  // namespace order_detail

// Plans the order into p.order_ws and points p.tile_order at it. The caller checked that the
// tile count fits the kernel's one-dimensional grid (int32) and that kmax > 0.
inline cudaError_t plan_tile_order(AttnParams& p, cudaStream_t stream) {
  using namespace order_detail;
  const int64_t rows = tile_rows(p), chunks = tile_chunks(p);
  int32_t* order = p.order_ws;
  int32_t* bin = order + rows;
  int32_t* hist = bin + rows;
  tile_bins_kernel<><<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(p.idx, rows, p.kmax, p.mk, bin, hist);
  tile_starts_kernel<><<<1, kOrderBins, 0, stream>>>(hist, chunks);
  tile_scatter_kernel<><<<static_cast<unsigned>(chunks), 32, 0, stream>>>(bin, rows, hist, order);
  p.tile_order = order;
  return cudaGetLastError();
}
#endif

}  // namespace adaspa

// The score kernel (sm80): one CTA per (query tile, head, batch). S = Q K^T again, tile by tile,
// reduced to one number per (query block, key block) with a given lse: sum of exp(scale * s - lse)
// (no P @ V) -> scores.
#pragma once

#include <cute/tensor.hpp>

#include <cmath>
#include <type_traits>

#include "adaspa/block_score.h"
#include "adaspa/kernel_traits_sm80.h"
#include "adaspa/params.h"
#include "adaspa/softmax.h"
#include "adaspa/tile_scheduler.h"
#include "adaspa/utils.h"
#include "adaspa/utils_sm80.h"

namespace adaspa {

using namespace cute;

template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, Traits::kMinCtasPerSm)
    score_kernel(const __grid_constant__ AttnParams p) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kNWarps = Traits::kNWarps, kT = Traits::kTilesPerBlock;
  constexpr int kQ = Traits::kQBlocksPerCta;

  extern __shared__ __align__(128) char smem[];

  const int tidx = threadIdx.x, lane = tidx % 32, warp = tidx / 32;
  const CtaTile cta = cta_tile();
  const int m_block = cta.m_block, h = cta.h, b = cta.b;
  const int64_t bh = static_cast<int64_t>(b) * p.heads + h;
  const int ntiles = (p.nk + kBlockN - 1) / kBlockN;
  const int rows_valid = p.nq - m_block * kBlockM;

  auto gmem = [](const void* ptr, int64_t off) { return make_gmem_ptr(static_cast<Element*>(const_cast<void*>(ptr)) + off); };
  Tensor mQ = make_tensor(gmem(p.q, b * p.q_batch_stride + h * p.q_head_stride),
                          make_shape(p.nq, Int<kHeadDim>{}), make_stride(p.q_row_stride, _1{}));
  Tensor gQ = local_tile(mQ, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m_block, 0));
  Tensor mK = make_tensor(gmem(p.k, b * p.k_batch_stride + h * p.k_head_stride),
                          make_shape(p.nk, Int<kHeadDim>{}), make_stride(p.k_row_stride, _1{}));
  Tensor gK = local_tile(mK, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, 0));  // (N, D, ntiles)

  Tensor sQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutKV{});  // the first buffer of the K ring

  typename Traits::GmemTiledCopy gmem_tiled_copy;
  auto gmem_thr_copy = gmem_tiled_copy.get_thread_slice(tidx);
  Tensor tQgQ = gmem_thr_copy.partition_S(gQ);
  Tensor tQsQ = gmem_thr_copy.partition_D(sQ);
  Tensor tKgK = gmem_thr_copy.partition_S(gK);
  Tensor tQcQ = gmem_thr_copy.partition_S(make_identity_tensor(make_shape(size<0>(sQ), size<1>(sQ))));
  Tensor tKVcKV = gmem_thr_copy.partition_S(make_identity_tensor(make_shape(size<0>(sK), size<1>(sK))));

  typename Traits::TiledMma tiled_mma;
  auto thr_mma = tiled_mma.get_thread_slice(tidx);
  Tensor tSrQ = thr_mma.partition_fragment_A(sQ);
  Tensor tSrK = thr_mma.partition_fragment_B(sK);
  auto smem_copy_q = make_tiled_copy_A(typename Traits::SmemCopyAtom{}, tiled_mma);
  auto smem_thr_copy_q = smem_copy_q.get_thread_slice(tidx);
  Tensor tSsQ = smem_thr_copy_q.partition_S(sQ);
  auto smem_copy_k = make_tiled_copy_B(typename Traits::SmemCopyAtom{}, tiled_mma);
  auto smem_thr_copy_k = smem_copy_k.get_thread_slice(tidx);

  // Tile `tile` of K, rows past Nk zero-filled.
  auto load_k = [&](int tile, auto& dst) {
    const auto src = tKgK(_, _, _, tile);
    if ((tile + 1) * kBlockN <= p.nk) {
      copy_rows<true>(gmem_tiled_copy, src, dst, tKVcKV, kBlockN);
    } else {
      copy_rows<false>(gmem_tiled_copy, src, dst, tKVcKV, p.nk - tile * kBlockN);
    }
  };

  // Q once, rows past Nq zero-filled.
  copy_rows<false>(gmem_tiled_copy, tQgQ, tQsQ, tQcQ, rows_valid);

  // Rows of the accumulators this thread holds: 2 * MMA_M.
  constexpr int kRows = 2 * (kBlockM / (16 * kNWarps));
  const float scale_log2 = p.scale * kLog2e;

  // Per-row log2-domain LSE; rows past Nq add nothing to the scores.
  float lse_log2[kRows];
  const float* lse_in = p.lse + bh * p.nq + static_cast<int64_t>(m_block) * kBlockM;
#pragma unroll
  for (int mi = 0; mi < kRows; ++mi) {
    const int r = acc_row<kNWarps>(mi);
    lse_log2[mi] = r < rows_valid ? lse_in[r] * kLog2e : INFINITY;
  }

  float* scores = p.scores + (bh * p.mq + static_cast<int64_t>(m_block) * kQ) * p.mk;
  __shared__ WarpPartials<kT, kQ, kNWarps> warp_partial;
  const int q_blocks = min(kQ, p.mq - m_block * kQ);
  auto finalize = [&](int blk) {
    finalize_block_scores<kT, kQ, kNWarps>(warp_partial, scores, p.mk, ntiles, q_blocks, blk, lane);
  };
  // K ring of kStages buffers after Q: tile t lives in buffer t % kStages; one cp.async group per
  // tile, committed even when empty so that "all but the newest kStages - 2 groups" is always
  // "up to this tile".
  constexpr int kStages = Traits::kScoreStages;
  auto k_buffer = [&](int stage) { return make_tensor(sK.data() + stage * size(sK), typename Traits::SmemLayoutKV{}); };
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < ntiles) {
      Tensor dst = gmem_thr_copy.partition_D(k_buffer(t));
      load_k(t, dst);
    }
    cute::cp_async_fence();
  }
  // No P @ V here, so no O accumulator: hold all of Q in registers and read only K from shared
  // memory per tile (half the smem traffic of the flash kernel).
  cp_async_wait<kStages - 2>();  // Q (its group went with tile 0's) and tile 0
  __syncthreads();
  cute::copy(smem_copy_q, tSsQ, smem_thr_copy_q.retile_D(tSrQ));
  float partial[kQ];
#pragma unroll
  for (int qb = 0; qb < kQ; ++qb) partial[qb] = 0.f;
  // One tile; masked only for the partial last tile of K (Nk % 64 != 0), which is peeled off the
  // loop: with the mask inside the loop ptxas may predicate it into every tile (64 FSEL + 20
  // ISETP per thread and tile, seen at D 64 / block 64), whatever the branch says.
  auto score_tile = [&](int tile, auto masked) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // K(tile) landed; the buffer of tile - 1 and the previous partials are free
    if (tile + kStages - 1 < ntiles) {
      Tensor dst = gmem_thr_copy.partition_D(k_buffer((tile + kStages - 1) % kStages));
      load_k(tile + kStages - 1, dst);
    }
    cute::cp_async_fence();
    if (tile % kT == 0 && tile > 0) finalize(tile / kT - 1);
    Tensor acc_s = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
    clear(acc_s);
    gemm_rs(acc_s, tSrQ, tSrK, smem_thr_copy_k.partition_S(k_buffer(tile % kStages)), tiled_mma, smem_copy_k,
            smem_thr_copy_k);
    Tensor s_rc = make_tensor(acc_s.data(), acc_rowcol(acc_s.layout()));
    if constexpr (decltype(masked)::value) mask_cols(s_rc, p.nk - tile * kBlockN);
    // Row mi of this thread lies in query block (mi / 2) * 16 * kNWarps / kBlockSize of the tile.
    add_block_scores(partial, s_rc, lse_log2, scale_log2,
                     [](int mi) { return (mi / 2) * (16 * kNWarps) / Traits::kBlockSize; });
    store_tile_partials<kT, kQ, kNWarps>(warp_partial, partial, tile, lane, warp);
  };
  const int full_tiles = p.nk / kBlockN;
#pragma unroll 1  // unrolled copies keep two tiles' fragments live (spills at block 128)
  for (int tile = 0; tile < full_tiles; ++tile) score_tile(tile, std::false_type{});
  if (full_tiles < ntiles) score_tile(full_tiles, std::true_type{});
  __syncthreads();
  if (ntiles > 0) finalize((ntiles - 1) / kT);
}

}  // namespace adaspa

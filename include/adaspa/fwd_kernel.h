// The attention kernel: one CTA per (query tile, head, batch). One flash mainloop
// (FlashAttention-2 structure: Q in smem, K / V tiles by cp.async overlapped with the two GEMMs,
// online softmax in registers) and one score pass:
//   kSparse  flash pass over the key blocks of the idx row          -> out, lse
//   kSearch  flash pass over all key blocks                         -> out, lse
//   kScore   score pass: Q K^T again, exp(s - lse) summed per
//            (query block, key block), with a given lse (no P @ V)  -> scores
// attn_search is a kSearch launch, then a kScore launch reading the lse just written (see
// fwd_launch.h for why two launches); block_scores is the kScore launch with a cached lse.
#pragma once

#include <cute/tensor.hpp>

#include <cmath>
#include <type_traits>

#include "adaspa/block_iterator.h"
#include "adaspa/kernel_traits.h"
#include "adaspa/params.h"
#include "adaspa/utils.h"

namespace adaspa {

using namespace cute;

constexpr float kLog2e = 1.4426950408889634f;
// Online softmax: the running max moves only when a row's max grows by more than this (log2).
constexpr float kRescaleLog2 = 8.f;

// Rows this thread owns in the (rows=(2, MMA_M)) accumulator view, relative to the query block.
template <int kNWarps>
__device__ __forceinline__ int acc_row(int mi_flat) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  return (mi_flat / 2) * (16 * kNWarps) + warp * 16 + lane / 4 + (mi_flat % 2) * 8;
}

// Columns >= valid_cols of an S tile -> -inf. Callers branch to it only for the partial last tile
// of K; the __syncwarp keeps that a branch: without it ptxas predicated the mask into every tile
// of attn_search's dense pass (64 FSEL + 32 ISETP issued per thread and tile, predicated off).
template <typename TensorS>
__device__ __forceinline__ void mask_cols(TensorS& s_rowcol, int valid_cols) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int nj = 0; nj < size<1>(s_rowcol); ++nj) {
    const int col = (nj / 2) * 8 + (lane % 4) * 2 + (nj % 2);
    if (col >= valid_cols) {
#pragma unroll
      for (int mi = 0; mi < size<0>(s_rowcol); ++mi) s_rowcol(mi, nj) = -INFINITY;
    }
  }
  __syncwarp();
}

// CTAs per SM the compiler must fit in registers: the score-only kernel has no O accumulator,
// yet without this bound ptxas spent 244 registers on it at block 128 (2 CTAs / SM instead of 3).
constexpr int min_ctas_per_sm(int threads, Mode mode) { return mode == Mode::kScore && threads == 128 ? 3 : 1; }

template <typename Traits, Mode kMode>
__global__ void __launch_bounds__(Traits::kNThreads, min_ctas_per_sm(Traits::kNThreads, kMode))
    attention_kernel(const __grid_constant__ AttnParams p) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kNWarps = Traits::kNWarps, kT = Traits::kTilesPerBlock;
  constexpr int kQ = Traits::kQBlocksPerCta;
  static_assert(kMode != Mode::kSparse || kQ == 1, "a sparse CTA walks exactly one idx row");
  constexpr bool kFlash = kMode != Mode::kScore;

  extern __shared__ __align__(128) char smem[];

  const int tidx = threadIdx.x, lane = tidx % 32, warp = tidx / 32;
  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z;  // m_block: kBlockM-row query tile
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
  Tensor sK = make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutKV{});
  Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});  // also K buffer 1

  typename Traits::GmemTiledCopy gmem_tiled_copy;
  auto gmem_thr_copy = gmem_tiled_copy.get_thread_slice(tidx);
  Tensor tQgQ = gmem_thr_copy.partition_S(gQ);
  Tensor tQsQ = gmem_thr_copy.partition_D(sQ);
  Tensor tKgK = gmem_thr_copy.partition_S(gK);
  Tensor tKsK = gmem_thr_copy.partition_D(sK);
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
  Tensor tSsK = smem_thr_copy_k.partition_S(sK);

  // Tile `tile` of K, read through src (the view of that tile), rows past Nk zero-filled.
  auto load_k_from = [&](auto const& src, int tile, auto& dst) {
    if ((tile + 1) * kBlockN <= p.nk) {
      copy_rows<true>(gmem_tiled_copy, src, dst, tKVcKV, kBlockN);
    } else {
      copy_rows<false>(gmem_tiled_copy, src, dst, tKVcKV, p.nk - tile * kBlockN);
    }
  };
  auto load_k = [&](int tile, auto& dst) { load_k_from(tKgK(_, _, _, tile), tile, dst); };

  // Q once, rows past Nq zero-filled.
  copy_rows<false>(gmem_tiled_copy, tQgQ, tQsQ, tQcQ, rows_valid);

  // Rows of the accumulators this thread holds: 2 * MMA_M.
  constexpr int kRows = 2 * (kBlockM / (16 * kNWarps));
  const float scale_log2 = p.scale * kLog2e;

  if constexpr (kFlash) {
    Tensor mV = make_tensor(gmem(p.v, b * p.v_batch_stride + h * p.v_head_stride),
                            make_shape(p.nk, Int<kHeadDim>{}), make_stride(p.v_row_stride, _1{}));
    Tensor gV = local_tile(mV, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, 0));
    Tensor tVgV = gmem_thr_copy.partition_S(gV);
    Tensor tVsV = gmem_thr_copy.partition_D(sV);
    Tensor sVt = make_tensor(sV.data(), typename Traits::SmemLayoutVt{});
    Tensor sVtNoSwizzle = make_tensor(sV.data().get(), typename Traits::SmemLayoutVtNoSwizzle{});
    Tensor tOrVt = thr_mma.partition_fragment_B(sVtNoSwizzle);
    auto smem_copy_v = make_tiled_copy_B(typename Traits::SmemCopyAtomTransposed{}, tiled_mma);
    auto smem_thr_copy_v = smem_copy_v.get_thread_slice(tidx);
    Tensor tOsVt = smem_thr_copy_v.partition_S(sVt);

    Tensor acc_o = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_o);
    Tensor o_rc = make_tensor(acc_o.data(), acc_rowcol(acc_o.layout()));
    static_assert(decltype(size<0>(o_rc))::value == kRows);
    float row_max[kRows], row_sum[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) row_max[i] = -INFINITY, row_sum[i] = 0.f;

    const int32_t* idx_row = kMode == Mode::kSparse ? p.idx + (bh * p.mq + m_block) * p.kmax : nullptr;  // kQ == 1
    TileIterator<kBlockN, kT, kMode == Mode::kSparse> it(p, idx_row);
    // This thread's K and V source views of the tile being loaded. With running pointers
    // (Traits::kRunningPointers) they are carried across iterations and moved by the distance to
    // the next tile (FlashAttention-2's scheme), else rebuilt from the tile index at each load.
    auto tKgK_cur = tKgK(_, _, _, it.tile >= 0 ? it.tile : 0);
    auto tVgV_cur = tVgV(_, _, _, it.tile >= 0 ? it.tile : 0);
    auto k_src = [&](int tile) {
      if constexpr (Traits::kRunningPointers) return tKgK_cur; else return tKgK(_, _, _, tile);
    };
    auto v_src = [&](int tile) {
      if constexpr (Traits::kRunningPointers) return tVgV_cur; else return tVgV(_, _, _, tile);
    };
    if (it.tile >= 0) load_k_from(k_src(it.tile), it.tile, tKsK);
    cute::cp_async_fence();

    while (it.tile >= 0) {
      const int tile = it.tile;
      const int valid_cols = p.nk - tile * kBlockN;
      Tensor acc_s = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
      clear(acc_s);
      cp_async_wait<0>();
      __syncthreads();  // K(tile) landed; every warp is done reading V(previous tile)
      if (valid_cols >= kBlockN) {
        copy_rows<true>(gmem_tiled_copy, v_src(tile), tVsV, tKVcKV, kBlockN);
      } else {  // zero-fill so 0 * garbage can never become NaN in P @ V
        copy_rows<false>(gmem_tiled_copy, v_src(tile), tVsV, tKVcKV, valid_cols);
      }
      cute::cp_async_fence();

      gemm_ss(acc_s, tSrQ, tSrK, tSsQ, tSsK, tiled_mma, smem_copy_q, smem_copy_k, smem_thr_copy_q, smem_thr_copy_k);
      Tensor s_rc = make_tensor(acc_s.data(), acc_rowcol(acc_s.layout()));
      if (valid_cols < kBlockN) mask_cols(s_rc, valid_cols);  // the last tile of K, if Nk % 64 != 0

      cp_async_wait<0>();
      __syncthreads();  // V(tile) landed; every warp is done reading K(tile)
      const int next = it.peek(p);
      if (next >= 0) {
        if constexpr (Traits::kRunningPointers) {
          const int64_t rows = static_cast<int64_t>(next - tile) * kBlockN;
          tKgK_cur.data() = tKgK_cur.data() + rows * p.k_row_stride;
          tVgV_cur.data() = tVgV_cur.data() + rows * p.v_row_stride;
        }
        load_k_from(k_src(next), next, tKsK);
        cute::cp_async_fence();
      }

      // Online softmax. Every visited tile has at least one valid column per row, so the
      // running max is finite after the first tile and exp2(-inf - max) = 0 for the rest.
      // The running max (and with it O and the row sums) only moves when the max of some row of
      // the warp grew by more than kRescaleLog2 (log2 units, after scaling): otherwise
      // P = exp2(s - stale max) <= 2^8, which fp32 sums and bf16 / fp16 P hold as precisely
      // (FlashAttention-4's conditional rescaling). After the first tiles the rescale of O
      // (D / 2 multiplies per row and thread) is skipped.
      // The test needs no quad reduction: row_max is the same in the four threads of a row, so
      // "some thread's own max grew past it" is "the row's max grew past it".
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
      for (int mi = 0; mi < kRows; ++mi) {
        const float mx_scaled = row_max[mi] * scale_log2;
        float sum = 0.f;
#pragma unroll
        for (int nj = 0; nj < size<1>(s_rc); ++nj) {
          const float e = exp2_approx(s_rc(mi, nj) * scale_log2 - mx_scaled);
          s_rc(mi, nj) = e;
          sum += e;
        }
        row_sum[mi] += sum;
      }
      Tensor rP = convert_type<Element>(acc_s);
      Tensor tOrP = make_tensor(rP.data(), acc_as_a_operand(rP.layout()));
      gemm_rs(acc_o, tOrP, tOrVt, tOsVt, tiled_mma, smem_copy_v, smem_thr_copy_v);
      if (next < 0) break;
      it.advance(p, idx_row);
    }
    cp_async_wait<0>();  // an empty idx row leaves the Q copy in flight

    // Epilogue: normalise, write out and lse straight from registers (rows past Nq skipped).
    Element* out = static_cast<Element*>(p.out) + b * p.o_batch_stride + h * p.o_head_stride;
    float* lse_out = p.lse + bh * p.nq + static_cast<int64_t>(m_block) * kBlockM;
#pragma unroll
    for (int mi = 0; mi < kRows; ++mi) {
      const float sum = quad_sum(row_sum[mi]);
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const float lse = sum > 0.f ? row_max[mi] * p.scale + __logf(sum) : -INFINITY;
      const int r = acc_row<kNWarps>(mi);
      if (r < rows_valid) {
        if (lane % 4 == 0) lse_out[r] = lse;
        Element* orow = out + static_cast<int64_t>(m_block * kBlockM + r) * p.o_row_stride + (lane % 4) * 2;
#pragma unroll
        for (int n = 0; n < size<1>(o_rc) / 2; ++n) {
          cutlass::Array<Element, 2> pair;
          pair[0] = static_cast<Element>(o_rc(mi, 2 * n) * inv);
          pair[1] = static_cast<Element>(o_rc(mi, 2 * n + 1) * inv);
          *reinterpret_cast<cutlass::Array<Element, 2>*>(orow + n * 8) = pair;
        }
      }
    }
  } else {
    // Per-row log2-domain LSE; rows past Nq add nothing to the scores.
    float lse_log2[kRows];
    const float* lse_in = p.lse + bh * p.nq + static_cast<int64_t>(m_block) * kBlockM;
#pragma unroll
    for (int mi = 0; mi < kRows; ++mi) {
      const int r = acc_row<kNWarps>(mi);
      lse_log2[mi] = r < rows_valid ? lse_in[r] * kLog2e : INFINITY;
    }

    // Score pass: S = Q K^T again, tile by tile, reduced to one number per (query block, key
    // block): sum of exp(scale * s - lse).
    // Row mi of this thread lies in query block (mi / 2) * 16 * kNWarps / kBlockSize of the tile.
    float* scores = p.scores + (bh * p.mq + static_cast<int64_t>(m_block) * kQ) * p.mk;
    // Per-warp sums of each key tile, for the blocks being reduced (two in flight).
    __shared__ float warp_partial[2][kT][kQ][kNWarps];
    const int q_blocks = min(kQ, p.mq - m_block * kQ);
    // Key block blk is summed over its tiles' and the warps' partials by warp blk % kNWarps, lane qb
    // for query block qb: the duty rotates over the warps, which sit on different schedulers (with
    // thread 0 alone doing it, one scheduler carried it for every tile of every CTA on the SM).
    auto finalize = [&](int blk) {
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
      scores[static_cast<int64_t>(lane) * p.mk + blk] = s;
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
    // memory per tile (half the smem traffic of the flash pass).
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
#pragma unroll
      for (int mi = 0; mi < kRows; ++mi) {
        constexpr int kRowsPerMmaM = 16 * kNWarps;
        const int qb = (mi / 2) * kRowsPerMmaM / Traits::kBlockSize;
#pragma unroll
        for (int nj = 0; nj < size<1>(s_rc); ++nj) partial[qb] += exp2_approx(s_rc(mi, nj) * scale_log2 - lse_log2[mi]);
      }
      // Reduce every tile on its own (a block-128 key block is two tiles): carrying sums across
      // tiles made ptxas keep far more registers live.
#pragma unroll
      for (int qb = 0; qb < kQ; ++qb) {
        const float w = warp_sum(partial[qb]);
        if (lane == 0) warp_partial[(tile / kT) & 1][tile % kT][qb][warp] = w;
        partial[qb] = 0.f;
      }
    };
    const int full_tiles = p.nk / kBlockN;
#pragma unroll 1  // unrolled copies keep two tiles' fragments live (spills at block 128)
    for (int tile = 0; tile < full_tiles; ++tile) score_tile(tile, std::false_type{});
    if (full_tiles < ntiles) score_tile(full_tiles, std::true_type{});
    __syncthreads();
    if (ntiles > 0) finalize((ntiles - 1) / kT);
  }
}

}  // namespace adaspa

// The flash kernel (sm80): one CTA per (query tile, head, batch). FlashAttention-2 structure: Q in
// smem, K / V tiles by cp.async overlapped with the two GEMMs, online softmax in registers.
// Dense or block-sparse through the key-tile iterator (block_iterator.h) -> out, lse.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>

#include <cmath>

#include "adaspa/block_iterator.h"
#include "adaspa/kernel_traits_sm80.h"
#include "adaspa/params.h"
#include "adaspa/softmax.h"
#include "adaspa/tile_scheduler.h"
#include "adaspa/utils.h"
#include "adaspa/utils_sm80.h"

namespace adaspa {

using namespace cute;

template <typename Traits, bool kSparse>
__global__ void __launch_bounds__(Traits::kNThreads, Traits::kMinCtasPerSm)
    flash_kernel(const __grid_constant__ AttnParams p) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  constexpr int kNWarps = Traits::kNWarps, kT = Traits::kTilesPerBlock;
  static_assert(!kSparse || Traits::kQBlocksPerCta == 1, "a sparse CTA walks exactly one idx row");

  extern __shared__ __align__(128) char smem[];

  const int tidx = threadIdx.x, lane = tidx % 32;
  const CtaTile cta = cta_tile();
  const int m_block = cta.m_block, h = cta.h, b = cta.b;
  const int64_t bh = static_cast<int64_t>(b) * p.heads + h;
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
  Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});

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

  // Q once, rows past Nq zero-filled.
  copy_rows<false>(gmem_tiled_copy, tQgQ, tQsQ, tQcQ, rows_valid);

  // Rows of the accumulators this thread holds: 2 * MMA_M.
  constexpr int kRows = 2 * (kBlockM / (16 * kNWarps));
  const float scale_log2 = p.scale * kLog2e;

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

  const int32_t* idx_row = kSparse ? p.idx + (bh * p.mq + m_block) * p.kmax : nullptr;  // one query block per CTA
  TileIterator<kBlockN, kT, kSparse> it(p, idx_row);
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

    online_softmax_update(row_max, row_sum, s_rc, o_rc, scale_log2);
    Tensor rP = convert_type<Element>(acc_s);
    Tensor tOrP = make_tensor(rP.data(), acc_as_a_operand(rP.layout()));
    gemm_rs(acc_o, tOrP, tOrVt, tOsVt, tiled_mma, smem_copy_v, smem_thr_copy_v);
    if (next < 0) break;
    it.advance(p, idx_row);
  }
  cp_async_wait<0>();  // an empty idx row leaves the Q copy in flight

  // Epilogue: normalise, write out and lse straight from registers (rows past Nq skipped).
  Element* out = static_cast<Element*>(p.out) + b * p.o_batch_stride + h * p.o_head_stride;
  float* lse_out = p.lse ? p.lse + bh * p.nq + static_cast<int64_t>(m_block) * kBlockM : nullptr;
#pragma unroll
  for (int mi = 0; mi < kRows; ++mi) {
    const SoftmaxRowResult res = softmax_row_result(row_sum[mi], row_max[mi], p.scale);
    const float inv = res.inv, lse = res.lse;
    const int r = acc_row<kNWarps>(mi);
    if (r < rows_valid) {
      if (lse_out && lane % 4 == 0) lse_out[r] = lse;
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
}

}  // namespace adaspa

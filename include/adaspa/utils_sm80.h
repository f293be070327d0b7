// sm80 fragment views and GEMMs: the mma.sync m16n8k16 accumulator layout, register-tile GEMMs
// fed by ldmatrix, cp.async waits.
#pragma once

#include <cute/tensor.hpp>

#include <cmath>

namespace adaspa {

using namespace cute;

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(CUTE_ARCH_CP_ASYNC_SM80_ENABLED)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// acc += A (smem, staged through registers k-slice by k-slice) * B (smem).
template <typename TensorAcc, typename TensorRA, typename TensorRB, typename TensorSA, typename TensorSB,
          typename TiledMma, typename CopyA, typename CopyB, typename ThrCopyA, typename ThrCopyB>
__device__ __forceinline__ void gemm_ss(TensorAcc& acc, TensorRA& tCrA, TensorRB& tCrB, TensorSA const& tCsA,
                                        TensorSB const& tCsB, TiledMma tiled_mma, CopyA copy_a, CopyB copy_b,
                                        ThrCopyA thr_copy_a, ThrCopyB thr_copy_b) {
  Tensor tCrA_view = thr_copy_a.retile_D(tCrA);
  Tensor tCrB_view = thr_copy_b.retile_D(tCrB);
  cute::copy(copy_a, tCsA(_, _, _0{}), tCrA_view(_, _, _0{}));
  cute::copy(copy_b, tCsB(_, _, _0{}), tCrB_view(_, _, _0{}));
#pragma unroll
  for (int i = 0; i < size<2>(tCrA); ++i) {
    if (i < size<2>(tCrA) - 1) {  // load slice i + 1 while slice i multiplies
      cute::copy(copy_a, tCsA(_, _, i + 1), tCrA_view(_, _, i + 1));
      cute::copy(copy_b, tCsB(_, _, i + 1), tCrB_view(_, _, i + 1));
    }
    cute::gemm(tiled_mma, tCrA(_, _, i), tCrB(_, _, i), acc);
  }
}

// acc += A (registers) * B (smem).
template <typename TensorAcc, typename TensorRA, typename TensorRB, typename TensorSB, typename TiledMma,
          typename CopyB, typename ThrCopyB>
__device__ __forceinline__ void gemm_rs(TensorAcc& acc, TensorRA& tCrA, TensorRB& tCrB, TensorSB const& tCsB,
                                        TiledMma tiled_mma, CopyB copy_b, ThrCopyB thr_copy_b) {
  Tensor tCrB_view = thr_copy_b.retile_D(tCrB);
  cute::copy(copy_b, tCsB(_, _, _0{}), tCrB_view(_, _, _0{}));
#pragma unroll
  for (int i = 0; i < size<2>(tCrA); ++i) {
    if (i < size<2>(tCrA) - 1) cute::copy(copy_b, tCsB(_, _, i + 1), tCrB_view(_, _, i + 1));
    cute::gemm(tiled_mma, tCrA(_, _, i), tCrB(_, _, i), acc);
  }
}

// (MMA=4, MMA_M, MMA_N) accumulator -> (rows=(2, MMA_M), cols=(2, MMA_N)) view. For the m16n8
// atom, thread `lane` holds rows lane/4 and lane/4 + 8, columns 2 * (lane % 4) + {0, 1}.
template <typename Layout>
__device__ __forceinline__ auto acc_rowcol(Layout acc_layout) {
  static_assert(decltype(size<0>(acc_layout))::value == 4);
  static_assert(decltype(rank(acc_layout))::value == 3);
  auto l = logical_divide(acc_layout, Shape<_2>{});
  return make_layout(make_layout(get<0, 1>(l), get<1>(l)), make_layout(get<0, 0>(l), get<2>(l)));
}

// (MMA=4, MMA_M, MMA_N) accumulator -> ((4, 2), MMA_M, MMA_N / 2): the A-operand register layout
// of m16n8k16, so P feeds P @ V without leaving registers.
template <typename Layout>
__device__ __forceinline__ auto acc_as_a_operand(Layout acc_layout) {
  auto l = logical_divide(acc_layout, Shape<Underscore, Underscore, _2>{});
  return make_layout(make_layout(get<0>(l), get<2, 0>(l)), get<1>(l), get<2, 1>(l));
}

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

}  // namespace adaspa

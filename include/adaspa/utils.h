// Small device helpers for the CuTe mainloops: register-tile GEMMs, accumulator layout views,
// predicated tile loads, quad reductions.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>
#include <cutlass/numeric_types.h>

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

template <typename To, typename Engine, typename Layout>
__device__ __forceinline__ auto convert_type(Tensor<Engine, Layout> const& t) {
  using From = typename Engine::value_type;
  constexpr int n = decltype(size(t))::value;
  cutlass::NumericArrayConverter<To, From, n> op;
  auto frag = op(*reinterpret_cast<const cutlass::Array<From, n>*>(t.data()));
  return make_tensor(make_rmem_ptr<To>(&frag), t.layout());
}

// Tile copy gmem -> smem with rows >= max_rows zero-filled (never read). S, D: (CPY, CPY_M, CPY_K).
template <bool kEven, typename TiledCopy, typename TS, typename TD, typename TC>
__device__ __forceinline__ void copy_rows(TiledCopy tiled_copy, TS const& src, TD& dst, TC const& identity,
                                          int max_rows) {
#pragma unroll
  for (int m = 0; m < size<1>(src); ++m) {
    if (kEven || get<0>(identity(0, m, 0)) < max_rows) {
      cute::copy(tiled_copy, src(_, m, _), dst(_, m, _));
    } else {
      cute::clear(dst(_, m, _));
    }
  }
}

// 2^x as one MUFU.EX2 instruction (flush-to-zero: results below 2^-126 become 0, 2^-inf = 0),
// whatever the build flags: exp2f() without --use_fast_math adds a range check and two
// predicated multiplies per call (~170 of ~1480 instructions per warp and tile of the mainloop).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x + __shfl_xor_sync(0xffffffffu, x, 1);
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

}  // namespace adaspa

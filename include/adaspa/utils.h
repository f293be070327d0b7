// Arch-neutral device helpers of the CuTe mainloops: fragment conversion, predicated tile loads,
// exp2, quad and warp reductions. The sm80 fragment views and GEMMs are in utils_sm80.h.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>
#include <cutlass/numeric_types.h>

namespace adaspa {

using namespace cute;

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

// 2^x on the FMA pipe, for a share of a MUFU-bound loop's exponentials: x rounded to an
// integer n by adding 1.5 * 2^23 (n lands in the low mantissa bits), a degree-3 polynomial for
// 2^(x - n) on [-0.5, 0.5] (relative error < 8e-5), n added to the result's exponent bits. x is
// clamped to [-126, 127], so 2^-inf gives ~1e-38 instead of 0.
__device__ __forceinline__ float exp2_poly(float x) {
  x = fminf(fmaxf(x, -126.f), 127.f);
  const float t = x + 12582912.f;
  const float f = x - (t - 12582912.f);
  const float p = fmaf(fmaf(fmaf(0.05508868f, f, 0.24260405f), f, 0.69327623f), f, 0.99992895f);
  return __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
}

// log2(x) as one MUFU.LG2 instruction; log2(0) = -inf.
__device__ __forceinline__ float log2_approx(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
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

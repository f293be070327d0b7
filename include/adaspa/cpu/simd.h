// The few SIMD operations the CPU attention kernel needs, for one instruction set chosen by
// ADASPA_CPU_ISA before inclusion: 2 = AVX-512F, 1 = AVX2 + FMA, 0 (default) = portable 4-lane
// vectors (GCC / Clang vector extensions: SSE2 on x86, NEON on Arm). Everything lives in the
// namespace ADASPA_CPU_NS (avx512 / avx2 / portable), so one binary can hold the kernel compiled
// for each set (csrc/cpu/attention_cpu_*.cpp, each under its own target pragma) without two
// translation units emitting the same inline function for different instruction sets. No torch.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef ADASPA_CPU_ISA
#define ADASPA_CPU_ISA 0
#endif

#if ADASPA_CPU_ISA == 2
#define ADASPA_CPU_NS avx512
#elif ADASPA_CPU_ISA == 1
#define ADASPA_CPU_NS avx2
#else
#define ADASPA_CPU_NS portable
#endif

#if ADASPA_CPU_ISA > 0
#include <immintrin.h>
#endif

#if defined(__clang__)
#define ADASPA_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define ADASPA_UNROLL _Pragma("GCC unroll 16")
#else
#define ADASPA_UNROLL
#endif
#define ADASPA_CPU_INLINE inline __attribute__((always_inline))

namespace adaspa::cpu::ADASPA_CPU_NS {

#if ADASPA_CPU_ISA == 2
constexpr int kLanes = 16;
#elif ADASPA_CPU_ISA == 1
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float vf __attribute__((vector_size(kLanes * 4)));
typedef int32_t vi __attribute__((vector_size(kLanes * 4)));

ADASPA_CPU_INLINE vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
ADASPA_CPU_INLINE void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
// x in every lane. (Not vf{} + x: that adds 0 first, to keep -0.) With x loaded from memory, the
// x86 builds broadcast straight from the load, leaving the shuffle port to the FMAs.
ADASPA_CPU_INLINE vf splat(float x) {
#if ADASPA_CPU_ISA == 2
  return _mm512_set1_ps(x);
#elif ADASPA_CPU_ISA == 1
  return _mm256_set1_ps(x);
#else
  return vf{x, x, x, x};
#endif
}

// a * b + c, fused where the instruction set has it (ISO C++ builds do not contract a * b + c).
ADASPA_CPU_INLINE vf fma(vf a, vf b, vf c) {
#if ADASPA_CPU_ISA == 2
  return _mm512_fmadd_ps(a, b, c);
#elif ADASPA_CPU_ISA == 1
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// max / min with the x86 semantics (b when either is NaN). The AVX-512 forms are the masked
// intrinsics with an all-ones mask: the plain ones start from _mm512_undefined_ps(), which GCC 12
// reports as used uninitialised.
ADASPA_CPU_INLINE vf vmax(vf a, vf b) {
#if ADASPA_CPU_ISA == 2
  return _mm512_mask_max_ps(a, static_cast<__mmask16>(-1), a, b);
#elif ADASPA_CPU_ISA == 1
  return _mm256_max_ps(a, b);
#else
  return a > b ? a : b;
#endif
}
ADASPA_CPU_INLINE vf vmin(vf a, vf b) {
#if ADASPA_CPU_ISA == 2
  return _mm512_mask_min_ps(a, static_cast<__mmask16>(-1), a, b);
#elif ADASPA_CPU_ISA == 1
  return _mm256_min_ps(a, b);
#else
  return a < b ? a : b;
#endif
}

ADASPA_CPU_INLINE float hsum(vf v) {
  float s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// 2^x for float x, relative error < 2e-7 on [-126, 126] (tests/cpp checks it): x = n + f with
// n = round(x), |f| <= 1/2, 2^f from a degree-6 minimax polynomial (relative error 1.9e-9 in exact
// arithmetic, ~1e-7 evaluated in float), 2^n put into the exponent bits. x is
// clamped to [-127, 127] first: x <= -127 (-inf and NaN included) gives exactly 0 (2^-127 has a
// zero exponent field), which for a softmax weight is exact to float precision. kOverflow: x >= 128
// gives +inf (only the score pass with a given LSE can get there); without it 2^127 is the top.
template <bool kOverflow = false>
ADASPA_CPU_INLINE vf exp2(vf x) {
  const vf xc = vmin(vmax(x, splat(-127.f)), splat(127.f));
  const vf magic = splat(12582912.f);  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const vf t = xc + magic;
  const vf f = xc - (t - magic);
  vf p = splat(1.5345791774707833e-04f);
  p = fma(p, f, splat(1.3399929365393297e-03f));
  p = fma(p, f, splat(9.6184890068980700e-03f));
  p = fma(p, f, splat(5.5503287817698640e-02f));
  p = fma(p, f, splat(2.4022646890428298e-01f));
  p = fma(p, f, splat(6.9314720573492570e-01f));
  p = fma(p, f, splat(1.0000000005541545f));
  const vi bits = ((vi)t - (0x4B400000 - 127)) << 23;  // (n + 127) << 23; vector casts keep the bits
  const vf r = p * (vf)bits;
  if constexpr (kOverflow) return x >= splat(128.f) ? splat(__builtin_inff()) : r;
  return r;
}

}  // namespace adaspa::cpu::ADASPA_CPU_NS

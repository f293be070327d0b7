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
ADASPA_CPU_INLINE vf splat(float x) { return vf{} + x; }

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

ADASPA_CPU_INLINE vf vmax(vf a, vf b) { return a > b ? a : b; }

ADASPA_CPU_INLINE float hsum(vf v) {
  float s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// 2^x for float x, within ~2 ulp on [-126, 128): x = n + f with n = round(x), |f| <= 1/2,
// 2^f from its degree-7 Taylor polynomial (truncation error < 6e-9), 2^n put into the exponent.
// x < -126 gives 0 (the true value is below 2^-126, so a softmax weight of 0 is exact to float
// precision; -inf included), x >= 128 gives +inf.
ADASPA_CPU_INLINE vf exp2(vf x) {
  const vf lo = splat(-126.f), hi = splat(128.f);
  const vf xc = x < lo ? lo : (x > splat(127.f) ? splat(127.f) : x);
  const vf magic = splat(12582912.f);  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const vf t = xc + magic;
  const vf n = t - magic;
  const vf f = xc - n;
  vf p = splat(1.5252733804059841e-05f);  // ln2^7 / 7!
  p = fma(p, f, splat(1.5403530393381609e-04f));
  p = fma(p, f, splat(1.3333558146428443e-03f));
  p = fma(p, f, splat(9.6181291076284772e-03f));
  p = fma(p, f, splat(5.5504108664821580e-02f));
  p = fma(p, f, splat(2.4022650695910071e-01f));
  p = fma(p, f, splat(6.9314718055994531e-01f));
  p = fma(p, f, splat(1.f));
  const vi bits = (((vi)t - 0x4B400000) + 127) << 23;  // vector casts reinterpret the bits
  vf r = p * (vf)bits;
  r = x < lo ? splat(0.f) : r;
  return x >= hi ? splat(__builtin_inff()) : r;
}

}  // namespace adaspa::cpu::ADASPA_CPU_NS

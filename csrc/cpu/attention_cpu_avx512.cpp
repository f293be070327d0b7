// The CPU attention kernel (adaspa/cpu/attention_cpu_kernel.h) built for AVX-512F (x86-64 only);
// csrc/cpu/attention_cpu.cpp picks one build at run time. No torch headers.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "adaspa/block_list.h"
#include "adaspa/cpu/attention_cpu.h"
#include "adaspa/params.h"

#if defined(__x86_64__)
#include <immintrin.h>

// Every function defined from here on is compiled for avx512f,avx2,fma. The headers above keep the
// default target: their inline functions are also emitted by translation units built for any CPU,
// and the linker keeps one copy of each. The kernel itself lives in the namespace adaspa::cpu::avx512.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx2,fma")
#endif

#define ADASPA_CPU_ISA 2
#include "adaspa/cpu/attention_cpu_kernel.h"

namespace adaspa::cpu {
const AttnCpuKernel kAttnAvx512{"avx512", &avx512::scratch_bytes, &avx512::run_item};
}  // namespace adaspa::cpu

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif  // __x86_64__

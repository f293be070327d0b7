// CPU kernels of sparse_attn, attn_search and block_scores: the entry points. The kernel itself is
// adaspa/cpu/attention_cpu_kernel.h, compiled once per instruction set by
// csrc/cpu/attention_cpu_{portable,avx2,avx512}.cpp; csrc/cpu/attention_cpu.cpp picks one at run
// time and fans the work items out over threads. No torch headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adaspa/params.h"

namespace adaspa::cpu {

// One instruction set's build of the kernel. A work item is one (b, h, query block):
// item = (b * heads + h) * mq + qb. Items are independent (each writes only its own rows of
// out / lse and its own row of scores), so any thread may run any item, in any order, with the
// same result bit for bit.
struct AttnCpuKernel {
  const char* isa;  // "portable", "avx2", "avx512"
  // Bytes of per-thread scratch run_item needs for these params (64-byte aligned by run_item).
  size_t (*scratch_bytes)(const AttnParams& p, Mode mode, int block_size, int head_dim);
  // q, k, v and out point to float32 data with the strides in p.
  void (*run_item)(const AttnParams& p, Mode mode, int block_size, int head_dim, int64_t item, void* scratch);
};

// Defined by csrc/cpu/attention_cpu_*.cpp. avx2 / avx512 exist on x86-64 builds only; run them
// only where the CPU has the instructions.
extern const AttnCpuKernel kAttnPortable;
#if defined(__x86_64__)
extern const AttnCpuKernel kAttnAvx2;    // AVX2 + FMA
extern const AttnCpuKernel kAttnAvx512;  // AVX-512F
#endif

}  // namespace adaspa::cpu

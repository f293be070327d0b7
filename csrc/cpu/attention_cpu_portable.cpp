// The CPU attention kernel (adaspa/cpu/attention_cpu_kernel.h) built for portable 4-lane vectors
// (any CPU the compiler targets); csrc/cpu/attention_cpu.cpp picks one build at run time. No torch
// headers.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "adaspa/block_list.h"
#include "adaspa/cpu/attention_cpu.h"
#include "adaspa/params.h"

#define ADASPA_CPU_ISA 0
#include "adaspa/cpu/attention_cpu_kernel.h"

namespace adaspa::cpu {
const AttnCpuKernel kAttnPortable{"portable", &portable::scratch_bytes, &portable::run_item};
}  // namespace adaspa::cpu

// CPU kernels of sparse_attn, attn_search and block_scores: tensors become pointers here, a
// kernel build for the CPU's instruction set is picked, and work items are spread over ATen's
// threads. The kernel math is adaspa/cpu/attention_cpu_kernel.h (float32 throughout).
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "adaspa/cpu/attention_cpu.h"
#include "checks.h"

namespace adaspa {
namespace {

bool cpu_has(const cpu::AttnCpuKernel* k) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (k == &cpu::kAttnAvx512) return __builtin_cpu_supports("avx512f");
  if (k == &cpu::kAttnAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return k == &cpu::kAttnPortable;
}

// The kernel build to run: ADASPA_CPU_ISA (portable / avx2 / avx512) when set, else the widest
// build the CPU runs, capped by ATen's own choice (ATEN_CPU_CAPABILITY=avx2 or =default lowers
// torch's kernels and these alike). Read at every call, so a test can switch builds.
const cpu::AttnCpuKernel& cpu_kernel(const char* op) {
  static const cpu::AttnCpuKernel* const widest = [] {
#if defined(__x86_64__)
    const std::string cap = at::get_cpu_capability();
    if (cap == "AVX512" && cpu_has(&cpu::kAttnAvx512)) return &cpu::kAttnAvx512;
    if ((cap == "AVX512" || cap == "AVX2") && cpu_has(&cpu::kAttnAvx2)) return &cpu::kAttnAvx2;
#endif
    return &cpu::kAttnPortable;
  }();
  const char* want = std::getenv("ADASPA_CPU_ISA");
  if (!want || !*want) return *widest;
  const cpu::AttnCpuKernel* builds[] = {
      &cpu::kAttnPortable,
#if defined(__x86_64__)
      &cpu::kAttnAvx2, &cpu::kAttnAvx512,
#endif
  };
  for (const cpu::AttnCpuKernel* k : builds) {
    if (std::string(want) != k->isa) continue;
    ADASPA_CHECK_VALUE(cpu_has(k), "adaspa.", op, ": ADASPA_CPU_ISA=", want, " but this CPU lacks its instructions");
    return *k;
  }
  std::string names;
  for (const cpu::AttnCpuKernel* k : builds) names += std::string(names.empty() ? "" : ", ") + k->isa;
  ADASPA_CHECK_VALUE(false, "adaspa.", op, ": ADASPA_CPU_ISA must be one of {", names, "} or unset, got '", want, "'");
  return *widest;
}

// Runs every (b, h, query block) item of `mode`. Inputs are upcast to float32 (no copy when
// they already are); out is written through a float32 buffer laid out like q. Threads take items
// from a shared counter, so a core slowed by other work takes fewer of them; the result does not
// depend on who ran what.
void run_cpu(const char* op, Mode mode, const AttnShape& s, const at::Tensor& q, const at::Tensor& k, const at::Tensor* v,
             at::Tensor* out, at::Tensor* lse, at::Tensor* scores, const at::Tensor* idx) {
  const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat);
  const at::Tensor vf = v ? v->to(at::kFloat) : at::Tensor();
  at::Tensor of;
  if (out) of = out->scalar_type() == at::kFloat ? *out : at::empty_like(*out, out->options().dtype(at::kFloat));
  const at::Tensor idxc = idx ? idx->contiguous() : at::Tensor();
  AttnParams p = base_params(s);
  set_strides(p, qf, kf, v ? &vf : nullptr, out ? &of : nullptr);
  p.q = qf.data_ptr<float>(), p.k = kf.data_ptr<float>();
  p.v = v ? vf.data_ptr<float>() : nullptr;
  p.out = out ? of.data_ptr<float>() : nullptr;
  p.lse = lse ? lse->data_ptr<float>() : nullptr;
  p.scores = scores ? scores->data_ptr<float>() : nullptr;
  p.idx = idx ? idxc.data_ptr<int32_t>() : nullptr;
  p.kmax = idx ? static_cast<int>(idxc.size(3)) : 0;
  const int bs = static_cast<int>(s.block_size), d = static_cast<int>(s.head_dim);
  const int64_t items = s.batch * s.heads * s.mq;
  const cpu::AttnCpuKernel& kernel = cpu_kernel(op);
  const size_t scratch_bytes = kernel.scratch_bytes(p, mode, bs, d);
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<char> scratch(scratch_bytes);
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;)
      kernel.run_item(p, mode, bs, d, it, scratch.data());
  });
  if (out && out->scalar_type() != at::kFloat) out->copy_(of);
}

std::tuple<at::Tensor, at::Tensor> sparse_attn_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                   const at::Tensor& idx, int64_t block_size,
                                                   std::optional<double> scale) {
  const AttnShape s = check_qkv("sparse_attn", q, k, &v, block_size, scale);
  check_idx("sparse_attn", idx, q, s);
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({s.batch, s.heads, s.nq}, q.options().dtype(at::kFloat));
  run_cpu("sparse_attn", Mode::kSparse, s, q, k, &v, &out, &lse, nullptr, &idx);
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attn_search_cpu(const at::Tensor& q, const at::Tensor& k,
                                                               const at::Tensor& v, int64_t block_size,
                                                               std::optional<double> scale) {
  const AttnShape s = check_qkv("attn_search", q, k, &v, block_size, scale);
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({s.batch, s.heads, s.nq}, q.options().dtype(at::kFloat));
  at::Tensor scores = at::empty({s.batch, s.heads, s.mq, s.mk}, q.options().dtype(at::kFloat));
  run_cpu("attn_search", Mode::kSearch, s, q, k, &v, &out, &lse, &scores, nullptr);
  return {out, lse, scores};
}

at::Tensor block_scores_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, int64_t block_size,
                            std::optional<double> scale) {
  const AttnShape s = check_qkv("block_scores", q, k, nullptr, block_size, scale);
  check_lse("block_scores", lse, q, s);
  at::Tensor lse_c = lse.contiguous();
  at::Tensor scores = at::empty({s.batch, s.heads, s.mq, s.mk}, q.options().dtype(at::kFloat));
  run_cpu("block_scores", Mode::kScore, s, q, k, nullptr, nullptr, &lse_c, &scores, nullptr);
  return scores;
}

}  // namespace

TORCH_LIBRARY_IMPL(adaspa, CPU, m) {
  m.impl("sparse_attn", &sparse_attn_cpu);
  m.impl("attn_search", &attn_search_cpu);
  m.impl("block_scores", &block_scores_cpu);
}

}  // namespace adaspa

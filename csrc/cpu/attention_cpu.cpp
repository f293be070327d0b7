// CPU kernels of sparse_attn, attn_search and block_scores: tensors become pointers here, a
// kernel build for the CPU's instruction set is picked, and work items are spread over torch's
// threads. The kernel math is adaspa/cpu/attention_cpu_kernel.h (float32 throughout).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "adaspa/cpu/attention_cpu.h"
#include "checks.h"
#include "torch_api.h"

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
    const std::string cap = tapi::cpu_capability();
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
// they already are); out is written through a contiguous float32 buffer. Threads take items
// from a shared counter, so a core slowed by other work takes fewer of them; the result does not
// depend on who ran what.
void run_cpu(const char* op, Mode mode, const AttnShape& s, const Tensor& q, const Tensor& k, const Tensor* v,
             Tensor* out, Tensor* lse, Tensor* scores, const Tensor* idx) {
  const Tensor qf = tapi::to_dtype(q, kFloat), kf = tapi::to_dtype(k, kFloat);
  const Tensor vf = v ? tapi::to_dtype(*v, kFloat) : Tensor();
  Tensor of;
  if (out) of = out->scalar_type() == kFloat ? *out : tapi::new_empty(q, out->sizes(), kFloat);
  const Tensor idxc = idx ? tapi::contiguous(*idx) : Tensor();
  AttnParams p = base_params(s);
  set_strides(p, qf, kf, v ? &vf : nullptr, out ? &of : nullptr);
  p.q = qf.const_data_ptr<float>(), p.k = kf.const_data_ptr<float>();
  p.v = v ? vf.const_data_ptr<float>() : nullptr;
  p.out = out ? of.mutable_data_ptr<float>() : nullptr;
  p.lse = lse ? lse->mutable_data_ptr<float>() : nullptr;
  p.scores = scores ? scores->mutable_data_ptr<float>() : nullptr;
  p.idx = idx ? idxc.const_data_ptr<int32_t>() : nullptr;
  p.kmax = idx ? static_cast<int>(idxc.size(3)) : 0;
  const int bs = static_cast<int>(s.block_size), d = static_cast<int>(s.head_dim);
  const int64_t items = s.batch * s.heads * s.mq;
  const cpu::AttnCpuKernel& kernel = cpu_kernel(op);
  const size_t scratch_bytes = kernel.scratch_bytes(p, mode, bs, d);
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(tapi::num_threads(), items));
  tapi::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<char> scratch(scratch_bytes);
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;)
      kernel.run_item(p, mode, bs, d, it, scratch.data());
  });
  if (out && out->scalar_type() != kFloat) tapi::copy_into(*out, of);
}

std::tuple<Tensor, Tensor> sparse_attn_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                                           int64_t block_size, std::optional<double> scale) {
  const AttnShape s = check_qkv("sparse_attn", q, k, &v, block_size, scale);
  check_idx("sparse_attn", idx, q, s);
  Tensor out = tapi::empty_like(q);
  Tensor lse = tapi::new_empty(q, {s.batch, s.heads, s.nq}, kFloat);
  run_cpu("sparse_attn", Mode::kSparse, s, q, k, &v, &out, &lse, nullptr, &idx);
  return {out, lse};
}

void sparse_attn_out_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, Tensor out,
                         int64_t block_size, std::optional<double> scale) {
  const AttnShape s = check_qkv("sparse_attn_out", q, k, &v, block_size, scale);
  check_idx("sparse_attn_out", idx, q, s);
  check_out("sparse_attn_out", out, q);
  run_cpu("sparse_attn_out", Mode::kSparse, s, q, k, &v, &out, nullptr, nullptr, &idx);
}

std::tuple<Tensor, Tensor, Tensor> attn_search_cpu(const Tensor& q, const Tensor& k, const Tensor& v,
                                                   int64_t block_size, std::optional<double> scale) {
  const AttnShape s = check_qkv("attn_search", q, k, &v, block_size, scale);
  Tensor out = tapi::empty_like(q);
  Tensor lse = tapi::new_empty(q, {s.batch, s.heads, s.nq}, kFloat);
  Tensor scores = tapi::new_empty(q, {s.batch, s.heads, s.mq, s.mk}, kFloat);
  run_cpu("attn_search", Mode::kSearch, s, q, k, &v, &out, &lse, &scores, nullptr);
  return {out, lse, scores};
}

Tensor block_scores_cpu(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t block_size,
                        std::optional<double> scale) {
  const AttnShape s = check_qkv("block_scores", q, k, nullptr, block_size, scale);
  check_lse("block_scores", lse, q, s);
  Tensor lse_c = tapi::contiguous(lse);
  Tensor scores = tapi::new_empty(q, {s.batch, s.heads, s.mq, s.mk}, kFloat);
  run_cpu("block_scores", Mode::kScore, s, q, k, nullptr, nullptr, &lse_c, &scores, nullptr);
  return scores;
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CPU, m) {
  m.impl("sparse_attn", ADASPA_KERNEL(&sparse_attn_cpu));
  m.impl("sparse_attn_out", ADASPA_KERNEL(&sparse_attn_out_cpu));
  m.impl("attn_search", ADASPA_KERNEL(&attn_search_cpu));
  m.impl("block_scores", ADASPA_KERNEL(&block_scores_cpu));
}

}  // namespace adaspa

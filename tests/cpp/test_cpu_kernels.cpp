// C++ tests of the torch-free kernel math in include/adaspa (no torch, no GPU). Prints
// "N passed, M failed" and exits non-zero on failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "adaspa/block_list.h"
#include "adaspa/cpu/attention_cpu.h"
#include "adaspa/cpu/simd.h"
#include "adaspa/cpu/select_cpu.h"
#include "adaspa/select_common.h"

static int passed = 0, failed = 0;
#define CHECK(cond)                                                       \
  do {                                                                    \
    if (cond) {                                                           \
      ++passed;                                                           \
    } else {                                                              \
      ++failed;                                                           \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
    }                                                                     \
  } while (0)

static void test_block_rule() {
  CHECK(adaspa::block_accepted(0, -1, 4));
  CHECK(!adaspa::block_accepted(-1, -1, 4));
  CHECK(!adaspa::block_accepted(4, -1, 4));
  CHECK(!adaspa::block_accepted(2, 2, 4));  // duplicate
  CHECK(!adaspa::block_accepted(1, 2, 4));  // not ascending
}

static void test_exp2() {
  namespace v = adaspa::cpu::portable;
  double worst = 0;
  for (int i = 0; i <= 252000; ++i) {  // x in [-126, 126]
    const float x = -126.f + 0.001f * i;
    const float got = v::exp2(v::splat(x))[0];
    worst = std::max(worst, std::fabs(got / std::exp2(double(x)) - 1));
  }
  CHECK(worst < 2e-7);
  CHECK(v::exp2(v::splat(0.f))[0] == 1.f && v::exp2(v::splat(-3.f))[0] == 0.125f);
  CHECK(v::exp2(v::splat(-127.5f))[0] == 0.f && v::exp2(v::splat(-INFINITY))[0] == 0.f);
  CHECK(std::isinf(v::exp2<true>(v::splat(200.f))[0]) && std::isinf(v::exp2<true>(v::splat(INFINITY))[0]));
}

static void test_order_key() {
  const float xs[] = {-INFINITY, -3.5f, -0.0f, 0.0f, 1e-30f, 2.0f, INFINITY};
  for (int i = 0; i + 1 < 7; ++i) CHECK(adaspa::order_key(xs[i]) <= adaspa::order_key(xs[i + 1]));
  CHECK(adaspa::order_key(-1.f) < adaspa::order_key(1.f));
}

static void test_select_row() {
  // one row of 6 blocks, block 5 forced, keep 2 of the rest: 3 and 1 (ties broken low-index first)
  std::vector<float> s = {0.1f, 0.5f, 0.2f, 0.9f, 0.5f, 0.01f};
  std::vector<int32_t> keep = {2}, idx(6);
  std::vector<uint8_t> forced = {0, 0, 0, 0, 0, 1};
  float kept = 0;
  adaspa::SelectParams p{s.data(), keep.data(), forced.data(), idx.data(), &kept, 1, 1, 1, 6};
  std::vector<uint32_t> keys;
  std::vector<int> order;
  adaspa::cpu::select_row(p, 0, keys, order);
  CHECK(idx[0] == 1 && idx[1] == 3 && idx[2] == 5 && idx[3] == -1 && idx[5] == -1);
  CHECK(std::fabs(kept - (0.5f + 0.9f + 0.01f) / 2.21f) < 1e-6f);
}

// Naive double-precision attention of one (b, h) over the key blocks `visit[qb]` of each query
// block: out [nq][d], lse [nq], scores [mq][mk] = sum over the tile of exp(s - lse_for_scores)
// (lse_for_scores null: the row's own lse).
struct Ref {
  std::vector<double> out, lse, scores;
};

static Ref naive(const float* q, const float* k, const float* v, int64_t rs, int nq, int nk, int d, int bs, float scale,
                 const std::vector<std::vector<int>>& visit, const float* lse_for_scores) {
  const int mq = (nq + bs - 1) / bs, mk = (nk + bs - 1) / bs;
  Ref r{std::vector<double>(size_t(nq) * d), std::vector<double>(nq), std::vector<double>(size_t(mq) * mk)};
  for (int i = 0; i < nq; ++i) {
    const auto& blocks = visit[i / bs];
    std::vector<int> cols;
    for (int j : blocks)
      for (int c = j * bs; c < std::min(nk, j * bs + bs); ++c) cols.push_back(c);
    std::vector<double> s(cols.size());
    double mx = -INFINITY, sum = 0;
    for (size_t t = 0; t < cols.size(); ++t) {
      double x = 0;
      for (int e = 0; e < d; ++e) x += double(q[i * rs + e]) * k[cols[t] * rs + e];
      mx = std::max(mx, s[t] = x * scale);
    }
    for (double x : s) sum += std::exp(x - mx);
    r.lse[i] = cols.empty() ? -INFINITY : mx + std::log(sum);
    for (int e = 0; e < d; ++e) {
      double o = 0;
      for (size_t t = 0; t < cols.size(); ++t) o += std::exp(s[t] - r.lse[i]) * v[cols[t] * rs + e];
      r.out[size_t(i) * d + e] = o;
    }
    const double l = lse_for_scores ? lse_for_scores[i] : r.lse[i];
    for (size_t t = 0; t < cols.size(); ++t) r.scores[size_t(i / bs) * mk + cols[t] / bs] += std::exp(s[t] - l);
  }
  return r;
}

// One kernel build against the naive reference: a [B=1, N, H=2, D] layout read as [B, H, N, D]
// (row stride H * D), odd lengths, partial last blocks, a junk idx row and an empty one.
static void test_kernel(const adaspa::cpu::AttnCpuKernel& kern, int nq, int nk, int d, int bs) {
  const int heads = 2, mq = (nq + bs - 1) / bs, mk = (nk + bs - 1) / bs;
  const int64_t rs = int64_t(heads) * d;
  std::mt19937 rng(nq * 7 + nk + d + bs);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(nq) * rs), k(size_t(nk) * rs), v(size_t(nk) * rs);
  for (auto* a : {&q, &k, &v})
    for (auto& x : *a) x = nd(rng);
  // idx row per query block: every other block, then junk (-1, out of range, a repeat); block 1
  // of head 1 visits nothing.
  const int kmax = mk + 3;
  std::vector<int32_t> idx(size_t(heads) * mq * kmax, -1);
  std::vector<std::vector<std::vector<int>>> visit(heads, std::vector<std::vector<int>>(mq));
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < mq; ++i) {
      int32_t* row = idx.data() + (size_t(h) * mq + i) * kmax;
      if (h == 1 && i == 1) continue;
      int n = 0;
      for (int j = (i + h) % 2; j < mk; j += 2) row[n++] = j, visit[h][i].push_back(j);
      row[n++] = mk + 5;
      row[n++] = visit[h][i].empty() ? -1 : visit[h][i].back();
    }
  std::vector<std::vector<int>> all(mq);
  for (auto& a : all)
    for (int j = 0; j < mk; ++j) a.push_back(j);
  const float scale = 1.f / std::sqrt(float(d));
  adaspa::AttnParams p{};
  p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = d;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = rs;
  p.q_batch_stride = int64_t(nq) * rs, p.k_batch_stride = p.v_batch_stride = int64_t(nk) * rs;
  p.o_batch_stride = p.q_batch_stride;
  p.batch = 1, p.heads = heads, p.nq = nq, p.nk = nk, p.mq = mq, p.mk = mk, p.scale = scale;
  std::vector<float> out(q.size(), NAN), lse(size_t(heads) * nq, NAN), scores(size_t(heads) * mq * mk, NAN);
  p.out = out.data(), p.lse = lse.data(), p.scores = scores.data();
  auto run = [&](adaspa::Mode mode) {
    std::vector<char> scratch(kern.scratch_bytes(p, mode, bs, d));
    for (int64_t it = 0; it < int64_t(heads) * mq; ++it) kern.run_item(p, mode, bs, d, it, scratch.data());
  };
  auto check = [&](adaspa::Mode mode, const char* what) {
    double out_err = 0, lse_err = 0, score_err = 0;
    bool inf_ok = true;
    std::vector<float> stale(lse.size());
    for (size_t i = 0; i < stale.size(); ++i) stale[i] = float(0.3 * std::sin(double(i)));
    for (int h = 0; h < heads; ++h) {
      const float* lse_h = mode == adaspa::Mode::kScore ? lse.data() + size_t(h) * nq : nullptr;
      const Ref r = naive(q.data() + h * d, k.data() + h * d, v.data() + h * d, rs, nq, nk, d, bs, scale,
                          mode == adaspa::Mode::kSparse ? visit[h] : all, lse_h);
      for (int i = 0; i < nq; ++i) {
        if (mode != adaspa::Mode::kScore) {
          for (int e = 0; e < d; ++e)
            out_err = std::max(out_err, std::fabs(out[i * rs + h * d + e] - r.out[size_t(i) * d + e]));
          const float l = lse[size_t(h) * nq + i];
          if (std::isinf(r.lse[i])) inf_ok = inf_ok && std::isinf(l) && l < 0;
          else lse_err = std::max(lse_err, std::fabs(l - r.lse[i]));
        }
      }
      if (mode != adaspa::Mode::kSparse)
        for (int i = 0; i < mq * mk; ++i) {
          const double want = r.scores[i], got = scores[size_t(h) * mq * mk + i];
          score_err = std::max(score_err, std::fabs(got - want) / (1e-3 * std::fabs(want) + 1e-5 * bs));
        }
    }
    const bool ok = out_err < 5e-6 && lse_err < 5e-6 && inf_ok && score_err < 1;
    if (!ok)
      std::printf("  %s %s nq=%d nk=%d d=%d bs=%d: out err %.2e lse err %.2e score err %.2f (x tol) -inf rows %s\n",
                  kern.isa, what, nq, nk, d, bs, out_err, lse_err, score_err, inf_ok ? "ok" : "WRONG");
    CHECK(ok);
  };
  p.idx = idx.data(), p.kmax = kmax;
  run(adaspa::Mode::kSparse);
  check(adaspa::Mode::kSparse, "sparse");
  p.idx = nullptr, p.kmax = 0;
  run(adaspa::Mode::kSearch);
  check(adaspa::Mode::kSearch, "search");
  for (size_t i = 0; i < lse.size(); ++i) lse[i] += float(0.3 * std::sin(double(i)));  // a stale LSE
  std::fill(scores.begin(), scores.end(), NAN);
  p.out = nullptr, p.v = nullptr;
  run(adaspa::Mode::kScore);
  check(adaspa::Mode::kScore, "score");
}

static std::vector<const adaspa::cpu::AttnCpuKernel*> kernels_here() {
  std::vector<const adaspa::cpu::AttnCpuKernel*> ks{&adaspa::cpu::kAttnPortable};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ks.push_back(&adaspa::cpu::kAttnAvx2);
  if (__builtin_cpu_supports("avx512f")) ks.push_back(&adaspa::cpu::kAttnAvx512);
#endif
  return ks;
}

static void test_attention_kernels() {
  for (const auto* kern : kernels_here()) {
    std::printf("kernel %s\n", kern->isa);
    const int shapes[][4] = {{70, 130, 64, 64}, {1, 1, 64, 64}, {129, 63, 128, 128}, {200, 333, 128, 64},
                             {130, 257, 64, 128}};
    for (const auto& s : shapes) test_kernel(*kern, s[0], s[1], s[2], s[3]);
  }
}

int main() {
  test_block_rule();
  test_order_key();
  test_exp2();
  test_select_row();
  test_attention_kernels();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

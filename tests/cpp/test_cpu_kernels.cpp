// C++ tests of the torch-free kernel math in include/adaspa (no torch, no GPU). Prints
// "N passed, M failed" and exits non-zero on failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "adaspa/block_list.h"
#include "adaspa/cpu/attention_cpu.h"
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

static void test_attention_block() {
  // 1 head, 70 queries, 130 keys, D = 64, block 64: dense via kSearch vs a naive softmax
  const int nq = 70, nk = 130, d = 64, bs = 64;
  std::mt19937 rng(0);
  std::normal_distribution<float> nd;
  std::vector<float> q(nq * d), k(nk * d), v(nk * d), out(nq * d), lse(nq), scores(2 * 3);
  for (auto* a : {&q, &k, &v})
    for (auto& x : *a) x = nd(rng);
  adaspa::AttnParams p{};
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data(), p.scores = scores.data();
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = d;
  p.batch = p.heads = 1, p.nq = nq, p.nk = nk, p.mq = 2, p.mk = 3, p.scale = 0.125f;
  adaspa::cpu::CpuScratch w;
  for (int qb = 0; qb < 2; ++qb) adaspa::cpu::run_query_block(p, adaspa::Mode::kSearch, bs, d, 0, 0, qb, w);
  double max_err = 0, row_sum_err = 0;
  for (int r = 0; r < nq; ++r) {
    std::vector<double> e(nk);
    double mx = -1e30, sum = 0;
    for (int c = 0; c < nk; ++c) {
      double s = 0;
      for (int i = 0; i < d; ++i) s += double(q[r * d + i]) * k[c * d + i];
      e[c] = s * 0.125;
      mx = std::max(mx, e[c]);
    }
    for (int c = 0; c < nk; ++c) sum += (e[c] = std::exp(e[c] - mx));
    for (int i = 0; i < d; ++i) {
      double o = 0;
      for (int c = 0; c < nk; ++c) o += e[c] * v[c * d + i];
      max_err = std::max(max_err, std::fabs(o / sum - out[r * d + i]));
    }
    max_err = std::max(max_err, std::fabs(mx + std::log(sum) - lse[r]));
  }
  for (int qb = 0; qb < 2; ++qb) {
    const double rows = qb == 0 ? 64 : 6;
    row_sum_err = std::max(row_sum_err, std::fabs(scores[qb * 3] + scores[qb * 3 + 1] + scores[qb * 3 + 2] - rows));
  }
  CHECK(max_err < 1e-4);
  CHECK(row_sum_err < 1e-3);
}

int main() {
  test_block_rule();
  test_order_key();
  test_select_row();
  test_attention_block();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

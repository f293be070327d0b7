// The CPU attention kernel for one instruction set (ADASPA_CPU_ISA, see simd.h); included only by
// csrc/cpu/attention_cpu_{portable,avx2,avx512}.cpp. float32 math throughout. No torch headers.
//
// A work item is one (b, h, query block). Its rows are taken in strips of kRows = 64 query rows
// (a 128-row block is two strips), the strip's rows lying across the vector lanes; in the flash
// pass (sparse_attn, attn_search) a strip of at most 32 rows (a block of 32 text rows, a short
// last query block) computes only the half of the vectors that holds them. Every tile product
// keeps that layout:
//   St[c][r] = sum_i K[c][i] * Qt[i][r]                      (one key block, c < cols)
//   Ot[j][r] = alpha[r] * Ot[j][r] + sum_c V[c][j] * St[c][r]  (St holds P by then)
// so K and V are read in place with any row stride (a broadcast per element, no packing), Q is
// transposed once per strip, and the softmax statistics (max, sum, rescale) of 64 rows are a few
// vector operations per key row. Logits are kept in log2 units (Q is scaled by scale * log2 e)
// so the softmax exponentials are exp2.
//
// Scores of attn_search come from the flash pass itself instead of a second pass over K: for each
// key block j and row r the pass already forms L_j[r] = sum_{c in j} 2^(s[r][c] - M_j[r]), M_j
// the running max at block j. With the final log-sum-exp lse2[r],
//   S[i, j] = sum_r 2^(s - lse2) summed over the block = sum_r L_j[r] * 2^(M_j[r] - lse2[r]),
// exactly the score pass's quantity (M_j <= lse2, so nothing overflows) at 2 floats per row and
// key block of scratch and no second q.k product. (The GPU kernel recomputes q.k instead: it has
// no room for those statistics.) block_scores, with a given LSE, makes the one pass it needs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "adaspa/block_list.h"
#include "adaspa/params.h"
#include "adaspa/cpu/simd.h"

namespace adaspa::cpu::ADASPA_CPU_NS {

constexpr int kRows = 64;  // query rows per strip, across the lanes of kRowVecs vectors
constexpr int kRowVecs = kRows / kLanes;
// Register tile of the products: kMR rows of the output x kNV vectors of strip rows, kMR * kNV
// accumulators plus kNV operand vectors (AVX-512: 28 of its 32 registers, 24 FMAs per 10 loads;
// 4 x 4 ran ~7 % slower at D 128 in one single-thread run; AVX2 / portable: 10 of 16).
#if ADASPA_CPU_ISA == 2
constexpr int kMR = 6, kNV = 4;
#else
constexpr int kMR = 4, kNV = 2;
#endif
static_assert(kRowVecs % kNV == 0, "strip vectors must split into register tiles");
// Row vectors of a strip of at most kRows / 2 rows; the vectors past them would only compute the
// zero-padded rows.
constexpr int kHalfVecs = kRowVecs / 2;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kInf = std::numeric_limits<float>::infinity();

// C[a][0:NV vectors] for the MR rows a of one register tile:
//   (kAccum ? C * alpha : 0) + sum_{t < nt} A[a * sa + t * st] * B[t][0:NV vectors]
// B and C have row stride kRows.
template <int MR, int NV, bool kAccum>
ADASPA_CPU_INLINE void micro_tile(int nt, const float* A, int64_t sa, int64_t st, const float* B, float* C,
                                  const float* alpha) {
  vf acc[MR][NV];
  ADASPA_UNROLL
  for (int m = 0; m < MR; ++m) {
    ADASPA_UNROLL
    for (int v = 0; v < NV; ++v)
      acc[m][v] = kAccum ? load(C + m * kRows + v * kLanes) * load(alpha + v * kLanes) : vf{};
  }
  for (int t = 0; t < nt; ++t) {
    vf b[NV];
    ADASPA_UNROLL
    for (int v = 0; v < NV; ++v) b[v] = load(B + t * kRows + v * kLanes);
    const float* at = A + t * st;
    ADASPA_UNROLL
    for (int m = 0; m < MR; ++m) {
      const vf a = splat(at[m * sa]);
      ADASPA_UNROLL
      for (int v = 0; v < NV; ++v) acc[m][v] = fma(a, b[v], acc[m][v]);
    }
  }
  ADASPA_UNROLL
  for (int m = 0; m < MR; ++m) {
    ADASPA_UNROLL
    for (int v = 0; v < NV; ++v) store(C + m * kRows + v * kLanes, acc[m][v]);
  }
}

// The product above for rows a < na of C and the first V vectors of columns (V = kRowVecs: the
// whole strip).
template <int V, bool kAccum>
inline void strip_product(int na, int nt, const float* A, int64_t sa, int64_t st, const float* B, float* C,
                          const float* alpha) {
  constexpr int NV = V < kNV ? V : kNV;
  static_assert(V % NV == 0, "the computed vectors must split into register tiles");
  for (int o = 0; o < V * kLanes; o += NV * kLanes) {
    int a = 0;
    for (; a + kMR <= na; a += kMR)
      micro_tile<kMR, NV, kAccum>(nt, A + a * sa, sa, st, B + o, C + a * kRows + o, alpha + o);
    if constexpr (kMR > 4) {
      if (a + 4 <= na) micro_tile<4, NV, kAccum>(nt, A + a * sa, sa, st, B + o, C + a * kRows + o, alpha + o), a += 4;
    }
    if (a + 2 <= na) micro_tile<2, NV, kAccum>(nt, A + a * sa, sa, st, B + o, C + a * kRows + o, alpha + o), a += 2;
    if (a < na) micro_tile<1, NV, kAccum>(nt, A + a * sa, sa, st, B + o, C + a * kRows + o, alpha + o);
  }
}

// Per-thread scratch, carved from one 64-byte aligned buffer.
struct Work {
  float* qt;      // [d][kRows]: the strip's queries, transposed, times scale * log2 e; 0 past its rows
  float* st;      // [bs][kRows]: one key block's logits, then its probabilities
  float* ot;      // [d][kRows]: unnormalised output, transposed
  float* m;       // [kRows] running max (log2 units)
  float* l;       // [kRows] running sum
  float* alpha;   // [kRows] rescale of the previous output
  float* lse2;    // [kRows] final log-sum-exp in log2 units (+inf past the strip's rows)
  float* blk_m;   // [mk][kRows] (kSearch) running max after each key block
  float* blk_l;   // [mk][kRows] (kSearch) that block's sum of 2^(s - running max)
  int32_t* blocks;  // [mk] key blocks visited
};

inline size_t carve(size_t& at, size_t bytes) {
  const size_t here = at;
  at += (bytes + 63) / 64 * 64;
  return here;
}

inline size_t layout(Work* w, char* base, const AttnParams& p, Mode mode, int bs, int d) {
  const size_t row = sizeof(float) * kRows;
  const size_t mk = static_cast<size_t>(p.mk);
  const size_t stats = mode == Mode::kSearch ? mk : 0;
  size_t at = 0;
  const size_t qt = carve(at, row * d), st = carve(at, row * bs), ot = carve(at, row * d);
  const size_t m = carve(at, row), l = carve(at, row), alpha = carve(at, row), lse2 = carve(at, row);
  const size_t bm = carve(at, row * stats), bl = carve(at, row * stats), blocks = carve(at, sizeof(int32_t) * mk);
  if (w) {
    auto f = [&](size_t off) { return reinterpret_cast<float*>(base + off); };
    *w = Work{f(qt), f(st), f(ot), f(m), f(l), f(alpha), f(lse2), f(bm), f(bl),
              reinterpret_cast<int32_t*>(base + blocks)};
  }
  return at;
}

inline size_t scratch_bytes(const AttnParams& p, Mode mode, int bs, int d) {
  return layout(nullptr, nullptr, p, mode, bs, d) + 64;  // + room to align the start
}

// Key blocks the item visits, in order: the accepted idx entries (kSparse, rule of block_list.h)
// or all of them.
inline int visited_blocks(const AttnParams& p, Mode mode, int64_t item, int32_t* out) {
  if (mode != Mode::kSparse) {
    for (int j = 0; j < p.mk; ++j) out[j] = j;
    return p.mk;
  }
  const int32_t* row = p.idx + item * p.kmax;
  int n = 0;
  int32_t last = -1;
  for (int t = 0; t < p.kmax; ++t)
    if (block_accepted(row[t], last, p.mk)) out[n++] = last = row[t];
  return n;
}

// Qt = (queries s0 .. s0 + rows of this head)^T * c, zero-padded to kRows columns.
inline void load_queries(const float* q, int64_t qs, int rows, int d, float c, float* qt) {
  for (int r = 0; r < kRows; ++r) {
    if (r < rows) {
      const float* qr = q + r * qs;
      for (int i = 0; i < d; ++i) qt[i * kRows + r] = qr[i] * c;
    } else {
      for (int i = 0; i < d; ++i) qt[i * kRows + r] = 0.f;
    }
  }
}

// Flash pass of one strip over the visited key blocks: out and (when not null) lse of its rows,
// in the strip's first V vectors; with stats (kSearch), each block's statistics for the scores.
template <int V>
inline void flash_strip(const AttnParams& p, int bs, int d, const float* k, const float* v, float* out, float* lse,
                        int rows, int nb, const Work& w, bool stats) {
  for (int i = 0; i < kRows; ++i) w.m[i] = -kInf, w.l[i] = 0.f;
  std::fill(w.ot, w.ot + static_cast<size_t>(d) * kRows, 0.f);
  for (int t = 0; t < nb; ++t) {
    const int64_t c0 = static_cast<int64_t>(w.blocks[t]) * bs;
    const int cols = static_cast<int>(std::min<int64_t>(bs, p.nk - c0));
    strip_product<V, false>(cols, d, k + c0 * p.k_row_stride, p.k_row_stride, 1, w.qt, w.st, nullptr);
    vf mx[V], sum[V];
    for (int u = 0; u < V; ++u) mx[u] = load(w.m + u * kLanes), sum[u] = vf{};
    for (int c = 0; c < cols; ++c)
      for (int u = 0; u < V; ++u) mx[u] = vmax(mx[u], load(w.st + c * kRows + u * kLanes));
    for (int u = 0; u < V; ++u) {
      store(w.alpha + u * kLanes, exp2(load(w.m + u * kLanes) - mx[u]));
      store(w.m + u * kLanes, mx[u]);
    }
    for (int c = 0; c < cols; ++c) {
      float* sc = w.st + c * kRows;
      for (int u = 0; u < V; ++u) {
        const vf e = exp2(load(sc + u * kLanes) - mx[u]);
        store(sc + u * kLanes, e);
        sum[u] += e;
      }
    }
    for (int u = 0; u < V; ++u) {
      store(w.l + u * kLanes, fma(load(w.l + u * kLanes), load(w.alpha + u * kLanes), sum[u]));
      if (stats) {
        store(w.blk_m + static_cast<size_t>(t) * kRows + u * kLanes, mx[u]);
        store(w.blk_l + static_cast<size_t>(t) * kRows + u * kLanes, sum[u]);
      }
    }
    strip_product<V, true>(d, cols, v + c0 * p.v_row_stride, 1, p.v_row_stride, w.st, w.ot, w.alpha);
  }
  for (int r = 0; r < rows; ++r) {
    const float l = w.l[r];
    const float inv = l > 0 ? 1.f / l : 0.f;
    float* o = out + r * p.o_row_stride;
    for (int i = 0; i < d; ++i) o[i] = w.ot[i * kRows + r] * inv;
    if (lse) lse[r] = l > 0 ? (w.m[r] + std::log2(l)) * kLn2 : -kInf;
    w.lse2[r] = l > 0 ? w.m[r] + std::log2(l) : kInf;
  }
  for (int r = rows; r < kRows; ++r) w.lse2[r] = kInf;
}

// scores[j] += sum over the strip's rows of L_j * 2^(M_j - lse2) (see the top of this file).
template <int V>
inline void search_scores(int nb, const Work& w, float* scores) {
  for (int t = 0; t < nb; ++t) {
    vf acc = vf{};
    const float* bm = w.blk_m + static_cast<size_t>(t) * kRows;
    const float* bl = w.blk_l + static_cast<size_t>(t) * kRows;
    for (int u = 0; u < V; ++u)
      acc = fma(load(bl + u * kLanes), exp2(load(bm + u * kLanes) - load(w.lse2 + u * kLanes)), acc);
    scores[w.blocks[t]] += hsum(acc);
  }
}

// block_scores: scores[j] += sum over the strip's rows and block j's keys of 2^(s - lse2).
inline void score_strip(const AttnParams& p, int bs, int d, const float* k, int nb, const Work& w, float* scores) {
  for (int t = 0; t < nb; ++t) {
    const int64_t c0 = static_cast<int64_t>(w.blocks[t]) * bs;
    const int cols = static_cast<int>(std::min<int64_t>(bs, p.nk - c0));
    strip_product<kRowVecs, false>(cols, d, k + c0 * p.k_row_stride, p.k_row_stride, 1, w.qt, w.st, nullptr);
    vf acc[kRowVecs], lse2[kRowVecs];
    for (int u = 0; u < kRowVecs; ++u) acc[u] = vf{}, lse2[u] = load(w.lse2 + u * kLanes);
    for (int c = 0; c < cols; ++c)
      for (int u = 0; u < kRowVecs; ++u) acc[u] += exp2<true>(load(w.st + c * kRows + u * kLanes) - lse2[u]);
    for (int u = 1; u < kRowVecs; ++u) acc[0] += acc[u];
    scores[w.blocks[t]] += hsum(acc[0]);
  }
}

// The flash pass of one strip, V of its vectors computed, and for kSearch its scores.
template <int V>
inline void flash_scores_strip(const AttnParams& p, Mode mode, int bs, int d, const float* k, const float* v,
                               float* out, float* lse, int rows, int nb, const Work& w, float* scores) {
  flash_strip<V>(p, bs, d, k, v, out, lse, rows, nb, w, mode == Mode::kSearch);
  if (mode == Mode::kSearch) search_scores<V>(nb, w, scores);
}

inline void run_item(const AttnParams& p, Mode mode, int bs, int d, int64_t item, void* scratch) {
  Work w;
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(scratch) + 63) / 64 * 64);
  layout(&w, base, p, mode, bs, d);
  const int qb = static_cast<int>(item % p.mq);
  const int64_t bh = item / p.mq;
  const int h = static_cast<int>(bh % p.heads), b = static_cast<int>(bh / p.heads);
  const int nb = visited_blocks(p, mode, item, w.blocks);
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
  const float* v = mode == Mode::kScore ? nullptr
                                        : static_cast<const float*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
  float* out = mode == Mode::kScore ? nullptr
                                    : static_cast<float*>(p.out) + b * p.o_batch_stride + h * p.o_head_stride;
  float* scores = p.scores ? p.scores + item * p.mk : nullptr;
  if (scores) std::fill(scores, scores + p.mk, 0.f);
  const float c = p.scale * kLog2e;
  const int end = static_cast<int>(std::min<int64_t>(p.nq, (static_cast<int64_t>(qb) + 1) * bs));
  for (int s0 = qb * bs; s0 < end; s0 += kRows) {
    const int rows = std::min(kRows, end - s0);
    load_queries(q + s0 * p.q_row_stride, p.q_row_stride, rows, d, c, w.qt);
    float* lse = p.lse ? p.lse + bh * p.nq + s0 : nullptr;  // null: sparse_attn_out, no lse kept
    if (mode == Mode::kScore) {
      // Whole strips: block_scores runs once per cached search, on video rows, and dispatching
      // it by strip size too cost ~2 % more instructions in its product loop (callgrind).
      for (int r = 0; r < kRows; ++r) w.lse2[r] = r < rows ? lse[r] * kLog2e : kInf;
      score_strip(p, bs, d, k, nb, w, scores);
    } else if (rows <= kRows / 2) {
      flash_scores_strip<kHalfVecs>(p, mode, bs, d, k, v, out + s0 * p.o_row_stride, lse, rows, nb, w, scores);
    } else {
      flash_scores_strip<kRowVecs>(p, mode, bs, d, k, v, out + s0 * p.o_row_stride, lse, rows, nb, w, scores);
    }
  }
}

}  // namespace adaspa::cpu::ADASPA_CPU_NS

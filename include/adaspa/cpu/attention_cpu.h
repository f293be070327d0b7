// CPU kernels for the attention ops, float32 throughout. One call handles one
// (batch, head, query block) work item; csrc/cpu/attention_cpu.cpp fans them out.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "adaspa/block_list.h"
#include "adaspa/params.h"

namespace adaspa::cpu {

// The key blocks query block `qb` visits: the listed ones (Mode::kSparse, rule of
// block_list.h) or all of them (kSearch, kScore).
inline void visited_blocks(const AttnParams& p, Mode mode, int b, int h, int qb, std::vector<int>& out) {
  out.clear();
  if (mode != Mode::kSparse) {
    for (int j = 0; j < p.mk; ++j) out.push_back(j);
    return;
  }
  const int32_t* row = p.idx + ((static_cast<int64_t>(b) * p.heads + h) * p.mq + qb) * p.kmax;
  int32_t last = -1;
  for (int t = 0; t < p.kmax; ++t)
    if (block_accepted(row[t], last, p.mk)) out.push_back(last = row[t]);
}

struct CpuScratch {
  std::vector<int> blocks;
  std::vector<float> logits;  // [rows, nb * bs]: logits, then exp(logit - row max)
  std::vector<float> kt;      // one K tile transposed: [d, bs]
  std::vector<float> acc;     // [rows, d]
  std::vector<float> row_max, row_sum;
};

// q, k, v (and out) point to float32 data with the strides in p; d = head dim. Work is tiled like
// the GPU kernel (query block x key block) with the inner loops over contiguous keys or head-dim
// elements, so the compiler vectorises them.
// kSparse / kSearch: writes out and lse for the rows of the block; kSearch also writes the block's
// row of scores. kScore: reads lse, writes scores.
inline void run_query_block(const AttnParams& p, Mode mode, int bs, int d, int b, int h, int qb, CpuScratch& w) {
  visited_blocks(p, mode, b, h, qb, w.blocks);
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
  const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
  const int64_t bh = static_cast<int64_t>(b) * p.heads + h;
  float* scores = p.scores ? p.scores + (bh * p.mq + qb) * p.mk : nullptr;
  if (scores) std::fill(scores, scores + p.mk, 0.f);
  const int r0 = qb * bs, rows = std::min(p.nq, r0 + bs) - r0;
  const int nb = static_cast<int>(w.blocks.size());
  const int64_t ncols = static_cast<int64_t>(nb) * bs;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  w.logits.assign(static_cast<size_t>(rows) * ncols, 0.f);
  w.kt.resize(static_cast<size_t>(d) * bs);
  auto cols = [&](int t) { return std::min(bs, p.nk - w.blocks[t] * bs); };

  // S = scale * Q K^T, one key tile at a time.
  for (int t = 0; t < nb; ++t) {
    const int c0 = w.blocks[t] * bs, cn = cols(t);
    for (int c = 0; c < cn; ++c)
      for (int i = 0; i < d; ++i) w.kt[i * bs + c] = k[(c0 + c) * p.k_row_stride + i];
    for (int r = 0; r < rows; ++r) {
      float* srow = w.logits.data() + r * ncols + t * bs;
      const float* qr = q + (r0 + r) * p.q_row_stride;
      for (int i = 0; i < d; ++i) {
        const float qi = qr[i] * p.scale;
        const float* kti = w.kt.data() + i * bs;
        for (int c = 0; c < cn; ++c) srow[c] += qi * kti[c];
      }
    }
  }

  // Row statistics, then P = exp(S - max) in place.
  w.row_max.assign(rows, -kInf);
  w.row_sum.assign(rows, 0.f);
  for (int r = 0; r < rows; ++r) {
    float* srow = w.logits.data() + r * ncols;
    float mx = -kInf;
    for (int t = 0; t < nb; ++t)
      for (int c = 0, cn = cols(t); c < cn; ++c) mx = std::max(mx, srow[t * bs + c]);
    if (mode == Mode::kScore) mx = p.lse[bh * p.nq + r0 + r];  // exp(S - lse) directly
    float sum = 0.f;
    for (int t = 0; t < nb; ++t)
      for (int c = 0, cn = cols(t); c < cn; ++c) sum += (srow[t * bs + c] = std::exp(srow[t * bs + c] - mx));
    w.row_max[r] = mx;
    w.row_sum[r] = sum;
  }

  if (mode != Mode::kScore) {
    w.acc.assign(static_cast<size_t>(rows) * d, 0.f);
    for (int t = 0; t < nb; ++t) {
      const int c0 = w.blocks[t] * bs, cn = cols(t);
      for (int r = 0; r < rows; ++r) {
        const float* prow = w.logits.data() + r * ncols + t * bs;
        float* a = w.acc.data() + r * d;
        for (int c = 0; c < cn; ++c) {
          const float e = prow[c];
          const float* vc = v + (c0 + c) * p.v_row_stride;
          for (int i = 0; i < d; ++i) a[i] += e * vc[i];
        }
      }
    }
    for (int r = 0; r < rows; ++r) {
      const float sum = w.row_sum[r];
      const float inv = sum > 0 ? 1.f / sum : 0.f;
      float* o = static_cast<float*>(p.out) + b * p.o_batch_stride + h * p.o_head_stride + (r0 + r) * p.o_row_stride;
      for (int i = 0; i < d; ++i) o[i] = w.acc[r * d + i] * inv;
      p.lse[bh * p.nq + r0 + r] = sum > 0 ? w.row_max[r] + std::log(sum) : -kInf;
    }
  }

  if (scores) {  // exp(S - lse): P / row sum (kSearch), or P itself (kScore, taken against lse)
    for (int r = 0; r < rows; ++r) {
      const float* prow = w.logits.data() + r * ncols;
      const float inv = mode == Mode::kScore ? 1.f : (w.row_sum[r] > 0 ? 1.f / w.row_sum[r] : 0.f);
      for (int t = 0; t < nb; ++t) {
        float s = 0;
        for (int c = 0, cn = cols(t); c < cn; ++c) s += prow[t * bs + c];
        scores[w.blocks[t]] += s * inv;
      }
    }
  }
}

}  // namespace adaspa::cpu

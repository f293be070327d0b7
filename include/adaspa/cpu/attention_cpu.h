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

inline float dot(const float* a, const float* b, int d) {
  // Eight independent partial sums let the compiler vectorise without -ffast-math.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= d; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < d; ++i) s += a[i] * b[i];
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

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

// q, k, v (and out) point to float32 data with the strides in p; d = head dim.
// kSparse / kSearch: writes out and lse for the rows of the block; kSearch also writes the
// block's row of scores. kScore: reads lse, writes scores.
inline void run_query_block(const AttnParams& p, Mode mode, int bs, int d, int b, int h, int qb,
                            std::vector<int>& blocks, std::vector<float>& logits, std::vector<float>& acc) {
  visited_blocks(p, mode, b, h, qb, blocks);
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
  const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
  const int64_t bh = static_cast<int64_t>(b) * p.heads + h;
  float* scores = p.scores ? p.scores + (bh * p.mq + qb) * p.mk : nullptr;
  if (scores) std::fill(scores, scores + p.mk, 0.f);
  const int r0 = qb * bs, r1 = std::min(p.nq, r0 + bs);
  const int nb = static_cast<int>(blocks.size());
  logits.resize(static_cast<size_t>(nb) * bs);
  acc.resize(d);
  for (int r = r0; r < r1; ++r) {
    const float* qr = q + r * p.q_row_stride;
    float mx = -std::numeric_limits<float>::infinity();
    for (int t = 0; t < nb; ++t) {
      const int c0 = blocks[t] * bs, c1 = std::min(p.nk, c0 + bs);
      for (int c = c0; c < c1; ++c) {
        const float s = p.scale * dot(qr, k + c * p.k_row_stride, d);
        logits[t * bs + (c - c0)] = s;
        mx = std::max(mx, s);
      }
    }
    float lse;
    if (mode == Mode::kScore) {
      lse = p.lse[bh * p.nq + r];
    } else {
      std::fill(acc.begin(), acc.end(), 0.f);
      float sum = 0;
      if (nb > 0 && mx > -std::numeric_limits<float>::infinity()) {
        for (int t = 0; t < nb; ++t) {
          const int c0 = blocks[t] * bs, c1 = std::min(p.nk, c0 + bs);
          for (int c = c0; c < c1; ++c) {
            const float e = std::exp(logits[t * bs + (c - c0)] - mx);
            sum += e;
            const float* vc = v + c * p.v_row_stride;
            for (int i = 0; i < d; ++i) acc[i] += e * vc[i];
          }
        }
      }
      float* o = static_cast<float*>(p.out) + b * p.o_batch_stride + h * p.o_head_stride + r * p.o_row_stride;
      const float inv = sum > 0 ? 1.f / sum : 0.f;
      for (int i = 0; i < d; ++i) o[i] = acc[i] * inv;
      lse = sum > 0 ? mx + std::log(sum) : -std::numeric_limits<float>::infinity();
      p.lse[bh * p.nq + r] = lse;
    }
    if (scores) {
      for (int t = 0; t < nb; ++t) {
        const int c0 = blocks[t] * bs, c1 = std::min(p.nk, c0 + bs);
        float s = 0;
        for (int c = c0; c < c1; ++c) s += std::exp(logits[t * bs + (c - c0)] - lse);
        scores[blocks[t]] += s;
      }
    }
  }
}

}  // namespace adaspa::cpu

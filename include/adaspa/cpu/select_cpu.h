// CPU top-k block selection for one (b, h, query block) row of scores.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "adaspa/params.h"
#include "adaspa/select_common.h"

namespace adaspa::cpu {

inline void select_row(const SelectParams& p, int64_t row, std::vector<uint32_t>& keys, std::vector<int>& order) {
  const int mk = p.mk;
  const int h = static_cast<int>((row / p.mq) % p.heads);
  const float* s = p.scores + row * mk;
  int32_t* idx = p.idx + row * mk;
  order.clear();
  keys.resize(mk);
  for (int j = 0; j < mk; ++j) {
    keys[j] = order_key(s[j]);
    if (!(p.forced && p.forced[j])) order.push_back(j);
  }
  const int k = clamp_keep(p.keep[h], static_cast<int>(order.size()));
  // Largest keys first; among equal keys the lower block index wins (the CUDA kernel does the same).
  auto better = [&](int a, int b) { return keys[a] != keys[b] ? keys[a] > keys[b] : a < b; };
  if (k < static_cast<int>(order.size())) std::nth_element(order.begin(), order.begin() + k, order.end(), better);
  order.resize(k);
  for (int j = 0; j < mk; ++j)
    if (p.forced && p.forced[j]) order.push_back(j);
  std::sort(order.begin(), order.end());
  double kept = 0, total = 0;
  for (int j = 0; j < mk; ++j) total += s[j];
  for (int j : order) kept += s[j];
  for (int t = 0; t < mk; ++t) idx[t] = t < static_cast<int>(order.size()) ? order[t] : -1;
  p.kept_mass[row] = total != 0 ? static_cast<float>(kept / total) : 0.f;
}

}  // namespace adaspa::cpu

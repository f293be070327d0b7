// mask_to_idx (packed block pattern -> the -1 padded idx of sparse_attn): the row mapping both
// kernels share, and the CPU row. The CUDA kernel is mask_to_idx_kernel.h.
#pragma once

#include <cstdint>

#include "adaspa/block_list.h"
#include "adaspa/params.h"

namespace adaspa {

// The pattern row (b, h, video query block) behind output row `row`, or -1 for a text query
// block, whose list is every key block.
ADASPA_HOST_DEVICE int64_t mask_source_row(const MaskIdxParams& p, int64_t row) {
  const int64_t per_bh = static_cast<int64_t>(p.mq) + p.text_qblocks;
  const int64_t bh = row / per_bh;
  const int64_t i = row - bh * per_bh;
  const int64_t video = p.text_first ? i - p.text_qblocks : i;
  return video >= 0 && video < p.mq ? bh * p.mq + video : -1;
}

namespace cpu {

// One output row: the set bits below mk in ascending order (the first `width`), then -1.
inline void mask_to_idx_row(const MaskIdxParams& p, int64_t row) {
  int32_t* out = p.idx + row * p.out_width;
  const int64_t src = mask_source_row(p, row);
  int n = 0;
  if (src < 0) {
    for (; n < p.mk; ++n) out[n] = n;
  } else {
    const uint8_t* bits = p.packed + src * p.nbytes;
    for (int byte = 0; byte < p.nbytes && n < p.width; ++byte) {
      unsigned m = bits[byte];
      const int below_mk = p.mk - byte * 8;
      if (below_mk < 8) m &= (1u << below_mk) - 1u;
      for (; m != 0 && n < p.width; m &= m - 1u) out[n++] = byte * 8 + __builtin_ctz(m);
    }
  }
  for (; n < p.out_width; ++n) out[n] = -1;
}

}  // namespace cpu
}  // namespace adaspa

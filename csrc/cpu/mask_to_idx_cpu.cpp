// CPU kernel of mask_to_idx.
#include "adaspa/mask_to_idx.h"
#include "checks.h"
#include "torch_api.h"

namespace adaspa {
namespace {

Tensor mask_to_idx_cpu(const Tensor& packed, int64_t mk, int64_t width, int64_t text_qblocks, bool text_first) {
  MaskIdxParams p = check_mask_to_idx(packed, mk, width, text_qblocks, text_first);
  Tensor idx = new_mask_idx(packed, p);
  const Tensor pc = tapi::contiguous(packed);
  p.packed = pc.const_data_ptr<uint8_t>();
  p.idx = idx.mutable_data_ptr<int32_t>();
  tapi::parallel_for(0, p.rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) cpu::mask_to_idx_row(p, row);
  });
  return idx;
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CPU, m) { m.impl("mask_to_idx", ADASPA_KERNEL(&mask_to_idx_cpu)); }

}  // namespace adaspa

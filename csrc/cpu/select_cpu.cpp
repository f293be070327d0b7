// CPU kernel of select_blocks.
#include <vector>

#include "adaspa/cpu/select_cpu.h"
#include "checks.h"
#include "torch_api.h"

namespace adaspa {
namespace {

std::tuple<Tensor, Tensor> select_blocks_cpu(const Tensor& scores, const Tensor& keep,
                                             const std::optional<Tensor>& forced_kv) {
  const SelectShape s = check_select(scores, keep, forced_kv);
  const Tensor sc = tapi::contiguous(scores);
  const Tensor kp = tapi::contiguous(tapi::to_dtype(keep, kInt));
  const Tensor fc = forced_kv.has_value() ? tapi::contiguous(*forced_kv) : Tensor();
  Tensor idx = tapi::new_empty(scores, {s.batch, s.heads, s.mq, s.mk}, kInt);
  Tensor kept = tapi::new_empty(scores, {s.batch, s.heads, s.mq}, kFloat);
  SelectParams p{sc.const_data_ptr<float>(), kp.const_data_ptr<int32_t>(),
                 forced_kv.has_value() ? reinterpret_cast<const uint8_t*>(fc.const_data_ptr<bool>()) : nullptr,
                 idx.mutable_data_ptr<int32_t>(), kept.mutable_data_ptr<float>(),
                 static_cast<int>(s.batch), static_cast<int>(s.heads), static_cast<int>(s.mq), static_cast<int>(s.mk)};
  tapi::parallel_for(0, s.batch * s.heads * s.mq, 16, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> keys;
    std::vector<int> order;
    for (int64_t row = begin; row < end; ++row) cpu::select_row(p, row, keys, order);
  });
  return {idx, kept};
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CPU, m) { m.impl("select_blocks", ADASPA_KERNEL(&select_blocks_cpu)); }

}  // namespace adaspa

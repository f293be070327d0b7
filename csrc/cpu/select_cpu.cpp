// CPU kernel of select_blocks.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "adaspa/cpu/select_cpu.h"
#include "checks.h"

namespace adaspa {
namespace {

std::tuple<at::Tensor, at::Tensor> select_blocks_cpu(const at::Tensor& scores, const at::Tensor& keep,
                                                     const std::optional<at::Tensor>& forced_kv) {
  const SelectShape s = check_select(scores, keep, forced_kv);
  const at::Tensor sc = scores.contiguous();
  const at::Tensor kp = keep.to(at::kInt).contiguous();
  const at::Tensor fc = forced_kv.has_value() ? forced_kv->contiguous() : at::Tensor();
  at::Tensor idx = at::empty({s.batch, s.heads, s.mq, s.mk}, scores.options().dtype(at::kInt));
  at::Tensor kept = at::empty({s.batch, s.heads, s.mq}, scores.options());
  SelectParams p{sc.data_ptr<float>(), kp.data_ptr<int32_t>(),
                 forced_kv.has_value() ? reinterpret_cast<const uint8_t*>(fc.data_ptr<bool>()) : nullptr,
                 idx.data_ptr<int32_t>(), kept.data_ptr<float>(),
                 static_cast<int>(s.batch), static_cast<int>(s.heads), static_cast<int>(s.mq), static_cast<int>(s.mk)};
  at::parallel_for(0, s.batch * s.heads * s.mq, 16, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> keys;
    std::vector<int> order;
    for (int64_t row = begin; row < end; ++row) cpu::select_row(p, row, keys, order);
  });
  return {idx, kept};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaspa, CPU, m) { m.impl("select_blocks", &select_blocks_cpu); }

}  // namespace adaspa

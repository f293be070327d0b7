// CUDA binding of select_blocks.
#include "adaspa/attention_api.h"
#include "checks.h"
#include "cuda/cuda_common.h"
#include "torch_api.h"

namespace adaspa {
namespace {

std::tuple<Tensor, Tensor> select_blocks_cuda(const Tensor& scores, const Tensor& keep,
                                              const std::optional<Tensor>& forced_kv) {
  const SelectShape s = check_select(scores, keep, forced_kv);
  ADASPA_CHECK_VALUE(s.mk < (int64_t{1} << 31), "adaspa.select_blocks: 'scores' rows must be shorter than 2^31");
  const int device = tapi::device_index(scores);
  const tapi::CudaDeviceGuard guard(device);
  Tensor idx = tapi::new_empty(scores, {s.batch, s.heads, s.mq, s.mk}, kInt);
  Tensor kept = tapi::new_empty(scores, {s.batch, s.heads, s.mq}, kFloat);
  // Small tensors given on the CPU are moved here (an H2D copy: pass them on the GPU to capture
  // this op in a CUDA graph).
  const Tensor sc = tapi::contiguous(scores);
  const Tensor kp = tapi::contiguous(tapi::to_device(keep, scores.device(), kInt));
  const Tensor fc = forced_kv.has_value() ? tapi::contiguous(tapi::to_device(*forced_kv, scores.device(), kBool))
                                          : Tensor();
  SelectParams p{sc.const_data_ptr<float>(), kp.const_data_ptr<int32_t>(),
                 forced_kv.has_value() ? reinterpret_cast<const uint8_t*>(fc.const_data_ptr<bool>()) : nullptr,
                 idx.mutable_data_ptr<int32_t>(), kept.mutable_data_ptr<float>(),
                 static_cast<int>(s.batch), static_cast<int>(s.heads), static_cast<int>(s.mq), static_cast<int>(s.mk)};
  check_launch(run_select(p, tapi::current_cuda_stream(device)), "select_blocks");
  return {idx, kept};
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CUDA, m) { m.impl("select_blocks", ADASPA_KERNEL(&select_blocks_cuda)); }

}  // namespace adaspa

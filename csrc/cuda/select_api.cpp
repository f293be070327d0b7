// CUDA binding of select_blocks.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "adaspa/attention_api.h"
#include "checks.h"
#include "cuda/cuda_common.h"

namespace adaspa {
namespace {

std::tuple<at::Tensor, at::Tensor> select_blocks_cuda(const at::Tensor& scores, const at::Tensor& keep,
                                                      const std::optional<at::Tensor>& forced_kv) {
  const SelectShape s = check_select(scores, keep, forced_kv);
  ADASPA_CHECK_VALUE(s.mk < (int64_t{1} << 31), "adaspa.select_blocks: 'scores' rows must be shorter than 2^31");
  const c10::cuda::CUDAGuard guard(scores.device());
  at::Tensor idx = at::empty({s.batch, s.heads, s.mq, s.mk}, scores.options().dtype(at::kInt));
  at::Tensor kept = at::empty({s.batch, s.heads, s.mq}, scores.options());
  // Small tensors given on the CPU are moved here (an H2D copy: pass them on the GPU to capture
  // this op in a CUDA graph).
  const at::Tensor sc = scores.contiguous();
  const at::Tensor kp = keep.to(scores.device(), at::kInt).contiguous();
  const at::Tensor fc = forced_kv.has_value() ? forced_kv->to(scores.device()).contiguous() : at::Tensor();
  SelectParams p{sc.data_ptr<float>(), kp.data_ptr<int32_t>(),
                 forced_kv.has_value() ? reinterpret_cast<const uint8_t*>(fc.data_ptr<bool>()) : nullptr,
                 idx.data_ptr<int32_t>(), kept.data_ptr<float>(),
                 static_cast<int>(s.batch), static_cast<int>(s.heads), static_cast<int>(s.mq), static_cast<int>(s.mk)};
  check_launch(run_select(p, c10::cuda::getCurrentCUDAStream()), "select_blocks");
  return {idx, kept};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaspa, CUDA, m) { m.impl("select_blocks", &select_blocks_cuda); }

}  // namespace adaspa

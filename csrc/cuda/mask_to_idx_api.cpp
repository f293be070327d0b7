// CUDA binding of mask_to_idx.
#include "adaspa/attention_api.h"
#include "checks.h"
#include "cuda/cuda_common.h"
#include "torch_api.h"

namespace adaspa {
namespace {

Tensor mask_to_idx_cuda(const Tensor& packed, int64_t mk, int64_t width, int64_t text_qblocks, bool text_first) {
  MaskIdxParams p = check_mask_to_idx(packed, mk, width, text_qblocks, text_first);
  const int device = tapi::device_index(packed);
  const tapi::CudaDeviceGuard guard(device);
  Tensor idx = new_mask_idx(packed, p);
  const Tensor pc = tapi::contiguous(packed);
  p.packed = pc.const_data_ptr<uint8_t>();
  p.idx = idx.mutable_data_ptr<int32_t>();
  check_launch(run_mask_to_idx(p, tapi::current_cuda_stream(device)), "mask_to_idx");
  return idx;
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CUDA, m) { m.impl("mask_to_idx", ADASPA_KERNEL(&mask_to_idx_cuda)); }

}  // namespace adaspa

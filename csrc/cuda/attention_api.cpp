// CUDA bindings (host C++, no nvcc) of sparse_attn, attn_search and block_scores: validate, turn tensors into an
// AttnParams, look the compiled kernel up in the generated registry, launch on the current stream.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "adaspa/attention_api.h"
#include "checks.h"
#include "cuda/cuda_common.h"

namespace adaspa {
namespace {

const char* dtype_name(DType d) { return d == DType::kFloat16 ? "float16" : "bfloat16"; }

AttentionLauncher find_kernel(const char* op, Mode mode, at::ScalarType st, int64_t head_dim, int64_t block_size) {
  const DType dt = st == at::kHalf ? DType::kFloat16 : DType::kBFloat16;
  for (int i = 0; i < kNumAttentionKernels; ++i) {
    const KernelEntry& e = kAttentionKernels[i];
    if (e.mode == mode && e.dtype == dt && e.head_dim == head_dim && e.block_size == block_size) return e.launch;
  }
  std::string have;
  for (int i = 0; i < kNumAttentionKernels; ++i) {
    const KernelEntry& e = kAttentionKernels[i];
    if (e.mode == mode)
      have += detail::msg(have.empty() ? "" : ", ", "(", dtype_name(e.dtype), ", ", e.head_dim, ", ", e.block_size, ")");
  }
  ADASPA_CHECK_VALUE(false, "adaspa.", op, ": no CUDA kernel compiled for (dtype, head_dim, block_size) = (",
                    dtype_name(dt), ", ", head_dim, ", ", block_size, "); this build has {", have,
                    "}. Rebuild without narrowing ADASPA_DTYPES / ADASPA_HEAD_DIMS / ADASPA_BLOCK_SIZES.");
  return nullptr;
}

void check_grid(const char* op, const AttnShape& s) {
  ADASPA_CHECK_VALUE(s.heads <= 65535 && s.batch <= 65535, "adaspa.", op,
                    ": at most 65535 heads and 65535 batch entries per call, got H=", s.heads, " B=", s.batch);
}

bool empty_grid(const AttnShape& s) { return s.batch == 0 || s.heads == 0 || s.mq == 0; }

void launch(const char* op, Mode mode, const AttnShape& s, const at::Tensor& q, AttnParams& p) {
  const AttentionLauncher fn = find_kernel(op, mode, q.scalar_type(), s.head_dim, s.block_size);
  check_launch(fn(p, c10::cuda::getCurrentCUDAStream()), op);
}

std::tuple<at::Tensor, at::Tensor> sparse_attn_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                    const at::Tensor& idx, int64_t block_size,
                                                    std::optional<double> scale) {
  const char* op = "sparse_attn";
  const AttnShape s = check_qkv(op, q, k, &v, block_size, scale);
  check_idx(op, idx, q, s);
  check_grid(op, s);
  ADASPA_CHECK_VALUE(idx.size(3) < (int64_t{1} << 31), "adaspa.", op, ": 'idx' rows must be shorter than 2^31");
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({s.batch, s.heads, s.nq}, q.options().dtype(at::kFloat));
  if (empty_grid(s)) return {out, lse};
  const at::Tensor qa = vector_aligned(q), ka = vector_aligned(k), va = vector_aligned(v);
  const at::Tensor idxc = idx.contiguous();
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, &va, &out);
  p.q = qa.data_ptr(), p.k = ka.data_ptr(), p.v = va.data_ptr(), p.out = out.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.idx = idxc.data_ptr<int32_t>();
  p.kmax = static_cast<int>(idxc.size(3));
  launch(op, Mode::kSparse, s, q, p);
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attn_search_cuda(const at::Tensor& q, const at::Tensor& k,
                                                                const at::Tensor& v, int64_t block_size,
                                                                std::optional<double> scale) {
  const char* op = "attn_search";
  const AttnShape s = check_qkv(op, q, k, &v, block_size, scale);
  check_grid(op, s);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({s.batch, s.heads, s.nq}, q.options().dtype(at::kFloat));
  at::Tensor scores = at::empty({s.batch, s.heads, s.mq, s.mk}, q.options().dtype(at::kFloat));
  if (empty_grid(s)) return {out, lse, scores};
  const at::Tensor qa = vector_aligned(q), ka = vector_aligned(k), va = vector_aligned(v);
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, &va, &out);
  p.q = qa.data_ptr(), p.k = ka.data_ptr(), p.v = va.data_ptr(), p.out = out.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.scores = scores.data_ptr<float>();
  launch(op, Mode::kSearch, s, q, p);
  return {out, lse, scores};
}

at::Tensor block_scores_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, int64_t block_size,
                             std::optional<double> scale) {
  const char* op = "block_scores";
  const AttnShape s = check_qkv(op, q, k, nullptr, block_size, scale);
  check_lse(op, lse, q, s);
  check_grid(op, s);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor scores = at::empty({s.batch, s.heads, s.mq, s.mk}, q.options().dtype(at::kFloat));
  if (empty_grid(s)) return scores;
  const at::Tensor qa = vector_aligned(q), ka = vector_aligned(k);
  const at::Tensor lse_c = lse.contiguous();
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, nullptr, nullptr);
  p.q = qa.data_ptr(), p.k = ka.data_ptr();
  p.lse = const_cast<float*>(lse_c.data_ptr<float>());
  p.scores = scores.data_ptr<float>();
  launch(op, Mode::kScore, s, q, p);
  return scores;
}

}  // namespace

TORCH_LIBRARY_IMPL(adaspa, CUDA, m) {
  m.impl("sparse_attn", &sparse_attn_cuda);
  m.impl("attn_search", &attn_search_cuda);
  m.impl("block_scores", &block_scores_cuda);
}

}  // namespace adaspa

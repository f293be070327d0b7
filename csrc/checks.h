// Argument validation shared by the CPU and CUDA implementations of every op. Errors name the
// op, the argument and what was expected; dtype problems raise TypeError, the rest ValueError.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "adaspa/params.h"
#include "error.h"
#include "torch_api.h"

namespace adaspa {

struct AttnShape {
  int64_t batch, heads, nq, nk, head_dim, mq, mk, block_size;
  float scale;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline std::string shape_str(const Tensor& t) { return detail::msg(t.sizes()); }

// Element-wise: the stable ABI's size list has operator== only in newer torch headers.
inline bool same_shape(const Tensor& a, const Tensor& b) {
  if (a.dim() != b.dim()) return false;
  for (int64_t i = 0; i < a.dim(); ++i)
    if (a.size(i) != b.size(i)) return false;
  return true;
}

inline void check_block_size(const char* op, int64_t block_size) {
  ADASPA_CHECK_VALUE(block_size == 64 || block_size == 128, "adaspa.", op,
                    ": block_size must be one of {64, 128}, got ", block_size);
}

inline void check_same_device(const char* op, const char* name, const Tensor& t, const Tensor& ref) {
  ADASPA_CHECK_VALUE(t.device() == ref.device(), "adaspa.", op, ": '", name, "' must be on ", ref.device(),
                    " like 'q' / 'scores', got ", t.device());
}

// q [B,H,Nq,D]; k, v [B,H,Nk,D] (v optional: block_scores has none).
inline AttnShape check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor* v,
                           int64_t block_size, std::optional<double> scale) {
  check_block_size(op, block_size);
  auto one = [&](const char* name, const Tensor& t) {
    ADASPA_CHECK_VALUE(t.dim() == 4, "adaspa.", op, ": '", name, "' must be 4-D [B, H, N, D], got shape ",
                      shape_str(t));
    const bool cpu = t.device().is_cpu();
    ADASPA_CHECK_TYPE(t.scalar_type() == kHalf || t.scalar_type() == kBFloat16 ||
                         (cpu && t.scalar_type() == kFloat),
                     "adaspa.", op, ": '", name, "' must be float16 or bfloat16", cpu ? " (or float32 on CPU)" : "",
                     ", got ", t.scalar_type());
    ADASPA_CHECK_VALUE(t.size(3) <= 1 || t.stride(3) == 1, "adaspa.", op, ": '", name,
                      "' must have a contiguous last dim (stride 1), got strides ", detail::msg(t.strides()));
  };
  one("q", q);
  one("k", k);
  ADASPA_CHECK_TYPE(k.scalar_type() == q.scalar_type(), "adaspa.", op, ": 'k' must have the dtype of 'q' (",
                   q.scalar_type(), "), got ", k.scalar_type());
  check_same_device(op, "k", k, q);
  ADASPA_CHECK_VALUE(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), "adaspa.", op,
                    ": 'k' must be [B, H, Nk, D] with B, H, D of 'q' ", shape_str(q), ", got ", shape_str(k));
  if (v) {
    one("v", *v);
    ADASPA_CHECK_TYPE(v->scalar_type() == q.scalar_type(), "adaspa.", op, ": 'v' must have the dtype of 'q' (",
                     q.scalar_type(), "), got ", v->scalar_type());
    check_same_device(op, "v", *v, q);
    ADASPA_CHECK_VALUE(same_shape(*v, k), "adaspa.", op, ": 'v' must have the shape of 'k' ", shape_str(k),
                      ", got ", shape_str(*v));
  }
  const int64_t d = q.size(3);
  ADASPA_CHECK_VALUE(d == 64 || d == 128, "adaspa.", op, ": head dim (last dim of 'q') must be one of {64, 128}, got ",
                    d);
  ADASPA_CHECK_VALUE(q.size(2) < (int64_t{1} << 31) && k.size(2) < (int64_t{1} << 31), "adaspa.", op,
                    ": sequence lengths must be < 2^31");
  AttnShape s{q.size(0), q.size(1), q.size(2), k.size(2), d, ceil_div(q.size(2), block_size),
              ceil_div(k.size(2), block_size), block_size, 0.f};
  const double sc = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(d));
  ADASPA_CHECK_VALUE(std::isfinite(sc) && sc > 0, "adaspa.", op, ": 'scale' must be positive and finite, got ", sc);
  s.scale = static_cast<float>(sc);
  return s;
}

inline void check_idx(const char* op, const Tensor& idx, const Tensor& q, const AttnShape& s) {
  ADASPA_CHECK_TYPE(idx.scalar_type() == kInt, "adaspa.", op, ": 'idx' must be int32, got ", idx.scalar_type());
  check_same_device(op, "idx", idx, q);
  ADASPA_CHECK_VALUE(idx.dim() == 4 && idx.size(0) == s.batch && idx.size(1) == s.heads && idx.size(2) == s.mq,
                    "adaspa.", op, ": 'idx' must be [B, H, Mq, Kmax] = [", s.batch, ", ", s.heads, ", ", s.mq,
                    ", Kmax] (Mq = ceil(Nq / block_size) = ceil(", s.nq, " / ", s.block_size, ")), got ",
                    shape_str(idx));
}

inline void check_lse(const char* op, const Tensor& lse, const Tensor& q, const AttnShape& s) {
  ADASPA_CHECK_TYPE(lse.scalar_type() == kFloat, "adaspa.", op, ": 'lse' must be float32, got ",
                   lse.scalar_type());
  check_same_device(op, "lse", lse, q);
  ADASPA_CHECK_VALUE(lse.dim() == 3 && lse.size(0) == s.batch && lse.size(1) == s.heads && lse.size(2) == s.nq,
                    "adaspa.", op, ": 'lse' must be [B, H, Nq] = [", s.batch, ", ", s.heads, ", ", s.nq, "], got ",
                    shape_str(lse));
}

// out of sparse_attn_out: q's shape, dtype and device, a contiguous last dim, any other strides.
inline void check_out(const char* op, const Tensor& out, const Tensor& q) {
  ADASPA_CHECK_TYPE(out.scalar_type() == q.scalar_type(), "adaspa.", op, ": 'out' must have the dtype of 'q' (",
                   q.scalar_type(), "), got ", out.scalar_type());
  check_same_device(op, "out", out, q);
  ADASPA_CHECK_VALUE(same_shape(out, q), "adaspa.", op, ": 'out' must have the shape of 'q' ", shape_str(q),
                    ", got ", shape_str(out));
  ADASPA_CHECK_VALUE(out.size(3) <= 1 || out.stride(3) == 1, "adaspa.", op,
                    ": 'out' must have a contiguous last dim (stride 1), got strides ", detail::msg(out.strides()));
}

// mask_to_idx: packed uint8 [B, H, Mq, ceil(mk / 8)], 0 <= width <= mk, text_qblocks >= 0.
// Returns the params without pointers; the output is [B, H, Mq + text_qblocks, out_width].
inline MaskIdxParams check_mask_to_idx(const Tensor& packed, int64_t mk, int64_t width, int64_t text_qblocks,
                                       bool text_first) {
  const char* op = "mask_to_idx";
  ADASPA_CHECK_TYPE(packed.scalar_type() == kByte, "adaspa.", op, ": 'packed' must be uint8, got ",
                   packed.scalar_type());
  ADASPA_CHECK_VALUE(packed.dim() == 4, "adaspa.", op, ": 'packed' must be 4-D [B, H, Mq, ceil(mk / 8)], got shape ",
                    shape_str(packed));
  constexpr int64_t kIntMax = (int64_t{1} << 31) - 1;
  ADASPA_CHECK_VALUE(mk >= 0 && mk <= kIntMax, "adaspa.", op, ": 'mk' must lie in [0, 2^31), got ", mk);
  ADASPA_CHECK_VALUE(packed.size(3) == ceil_div(mk, 8), "adaspa.", op, ": 'packed' must be [B, H, Mq, ceil(mk / 8)] = [",
                    packed.size(0), ", ", packed.size(1), ", ", packed.size(2), ", ", ceil_div(mk, 8), "] for mk = ", mk,
                    ", got ", shape_str(packed));
  ADASPA_CHECK_VALUE(width >= 0 && width <= mk, "adaspa.", op, ": 'width' must lie in [0, mk = ", mk, "], got ", width);
  ADASPA_CHECK_VALUE(text_qblocks >= 0 && text_qblocks <= kIntMax - packed.size(2), "adaspa.", op,
                    ": 'text_qblocks' must lie in [0, 2^31 - Mq), got ", text_qblocks);
  MaskIdxParams p{};
  p.mq = static_cast<int>(packed.size(2));
  p.nbytes = static_cast<int>(packed.size(3));
  p.mk = static_cast<int>(mk);
  p.width = static_cast<int>(width);
  p.out_width = static_cast<int>(text_qblocks > 0 ? mk : width);
  p.text_qblocks = static_cast<int>(text_qblocks);
  p.text_first = text_first;
  p.rows = packed.size(0) * packed.size(1) * (packed.size(2) + text_qblocks);
  return p;
}

// The idx tensor mask_to_idx returns for checked params p.
inline Tensor new_mask_idx(const Tensor& packed, const MaskIdxParams& p) {
  const int64_t rows = int64_t{p.mq} + p.text_qblocks, cols = p.out_width;
  return tapi::new_empty(packed, {packed.size(0), packed.size(1), rows, cols}, kInt);
}

struct SelectShape {
  int64_t batch, heads, mq, mk;
};

// scores [B,H,Mq,Mk] float32; keep int32/int64 [H] (CPU or scores' device); forced_kv bool [Mk].
// keep values are range-checked here when they live on the CPU (no device sync); on the GPU the
// kernel clamps them and the Python wrapper's check mode validates them.
inline SelectShape check_select(const Tensor& scores, const Tensor& keep, const std::optional<Tensor>& forced) {
  const char* op = "select_blocks";
  ADASPA_CHECK_TYPE(scores.scalar_type() == kFloat, "adaspa.", op, ": 'scores' must be float32, got ",
                   scores.scalar_type());
  ADASPA_CHECK_VALUE(scores.dim() == 4, "adaspa.", op, ": 'scores' must be 4-D [B, H, Mq, Mk], got shape ",
                    shape_str(scores));
  SelectShape s{scores.size(0), scores.size(1), scores.size(2), scores.size(3)};
  ADASPA_CHECK_TYPE(keep.scalar_type() == kInt || keep.scalar_type() == kLong, "adaspa.", op,
                   ": 'keep' must be int32 (or int64), got ", keep.scalar_type());
  ADASPA_CHECK_VALUE(keep.dim() == 1 && keep.size(0) == s.heads, "adaspa.", op, ": 'keep' must be [H] = [", s.heads,
                    "], got ", shape_str(keep));
  ADASPA_CHECK_VALUE(keep.device().is_cpu() || keep.device() == scores.device(), "adaspa.", op,
                    ": 'keep' must be on the CPU or on ", scores.device(), ", got ", keep.device());
  if (keep.device().is_cpu() && keep.numel() > 0) {
    const Tensor kl = tapi::contiguous(tapi::to_dtype(keep, kLong));  // [H]: a few values
    const int64_t* kv = kl.const_data_ptr<int64_t>();
    const auto [lo, hi] = std::minmax_element(kv, kv + kl.numel());
    ADASPA_CHECK_VALUE(*lo >= 0 && *hi <= s.mk, "adaspa.", op, ": 'keep' values must lie in [0, Mk = ", s.mk,
                      "], got min ", *lo, " max ", *hi);
  }
  if (forced.has_value()) {
    ADASPA_CHECK_TYPE(forced->scalar_type() == kBool, "adaspa.", op, ": 'forced_kv' must be bool, got ",
                     forced->scalar_type());
    ADASPA_CHECK_VALUE(forced->dim() == 1 && forced->size(0) == s.mk, "adaspa.", op, ": 'forced_kv' must be [Mk] = [",
                      s.mk, "], got ", shape_str(*forced));
    ADASPA_CHECK_VALUE(forced->device().is_cpu() || forced->device() == scores.device(), "adaspa.", op,
                      ": 'forced_kv' must be on the CPU or on ", scores.device(), ", got ", forced->device());
  }
  return s;
}

// Fill the stride fields of AttnParams from [B,H,N,D] tensors.
inline void set_strides(AttnParams& p, const Tensor& q, const Tensor& k, const Tensor* v, const Tensor* out) {
  p.q_batch_stride = q.stride(0), p.q_head_stride = q.stride(1), p.q_row_stride = q.stride(2);
  p.k_batch_stride = k.stride(0), p.k_head_stride = k.stride(1), p.k_row_stride = k.stride(2);
  if (v) p.v_batch_stride = v->stride(0), p.v_head_stride = v->stride(1), p.v_row_stride = v->stride(2);
  if (out) p.o_batch_stride = out->stride(0), p.o_head_stride = out->stride(1), p.o_row_stride = out->stride(2);
}

inline AttnParams base_params(const AttnShape& s) {
  AttnParams p{};
  p.batch = static_cast<int>(s.batch), p.heads = static_cast<int>(s.heads);
  p.nq = static_cast<int>(s.nq), p.nk = static_cast<int>(s.nk);
  p.mq = static_cast<int>(s.mq), p.mk = static_cast<int>(s.mk);
  p.scale = s.scale;
  return p;
}

}  // namespace adaspa

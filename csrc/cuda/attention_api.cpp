// CUDA bindings (host C++, no nvcc) of sparse_attn, attn_search and block_scores: validate, turn tensors into an
// AttnParams, pick the kernel path, look the op's kernels up in the generated registry, launch them on the
// current stream. kernel_path answers which path a call would take.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "adaspa/attention_api.h"
#include "adaspa/tile_order.h"
#include "adaspa/tile_scheduler.h"
#include "checks.h"
#include "cuda/cuda_common.h"
#include "torch_api.h"

namespace adaspa {
namespace {

const char* dtype_name(DType d) { return d == DType::kFloat16 ? "float16" : "bfloat16"; }
const char* kernel_name(Kernel k) {
  return k == Kernel::kFlashSparse  ? "flash_sparse"
         : k == Kernel::kFlashDense ? "flash_dense"
         : k == Kernel::kScore      ? "score"
                                    : "flash_search";
}
const char* path_name(KernelPath p) { return p == KernelPath::kPortable ? "portable" : "hopper"; }

// The kernels an op launches on each path, in order. The portable attn_search is two launches on
// the caller's stream, the dense flash kernel (out, lse), then the score kernel reading that lse:
// one fused launch (flash pass, then score pass in the same CTA) ran its score pass at the flash
// pass's occupancy (2 CTAs / SM, 230-255 registers) instead of the score kernel's 3; on an H100
// the two were within 1 % at D 128, and the fused launch 7-11 % slower at D 64 (NOTES.md,
// 2026-11-27 session 5). The hopper attn_search is one pass that derives the scores from the
// dense pass's own row sums (flash_kernel_sm90.h, "One-pass block scores").
struct KernelList {
  int n;
  Kernel kernels[2];
};
struct OpKernels {
  const char* op;
  KernelList portable, hopper;
  const KernelList& on(KernelPath path) const { return path == KernelPath::kPortable ? portable : hopper; }
};
constexpr OpKernels kSparseAttn{"sparse_attn", {1, {Kernel::kFlashSparse}}, {1, {Kernel::kFlashSparse}}};
constexpr OpKernels kAttnSearch{"attn_search", {2, {Kernel::kFlashDense, Kernel::kScore}}, {1, {Kernel::kFlashSearch}}};
constexpr OpKernels kBlockScores{"block_scores", {1, {Kernel::kScore}}, {1, {Kernel::kScore}}};

const OpKernels& op_kernels(std::string_view op) {
  for (const OpKernels* o : {&kSparseAttn, &kAttnSearch, &kBlockScores}) {
    if (op == o->op) return *o;
  }
  ADASPA_CHECK_VALUE(false, "adaspa.kernel_path: op must be one of sparse_attn, attn_search, block_scores, got '",
                    std::string(op), "'");
  return kSparseAttn;
}

struct Tuple {
  DType dtype;
  int64_t head_dim, block_size;
};

const KernelEntry* find_entry(Kernel kernel, KernelPath path, const Tuple& t) {
  for (int i = 0; i < kNumAttentionKernels; ++i) {
    const KernelEntry& e = kAttentionKernels[i];
    if (e.kernel == kernel && e.path == path && e.dtype == t.dtype && e.head_dim == t.head_dim &&
        e.block_size == t.block_size)
      return &e;
  }
  return nullptr;
}

// "{(bfloat16, 128, 64), ...}": the (dtype, head_dim, block_size) tuples compiled for a kernel and path.
std::string compiled_set(Kernel kernel, KernelPath path) {
  std::string have;
  for (int i = 0; i < kNumAttentionKernels; ++i) {
    const KernelEntry& e = kAttentionKernels[i];
    if (e.kernel == kernel && e.path == path)
      have += detail::msg(have.empty() ? "" : ", ", "(", dtype_name(e.dtype), ", ", e.head_dim, ", ", e.block_size, ")");
  }
  return "{" + have + "}";
}

// ADASPA_KERNEL_PATH, read at every call so that a benchmark can switch paths between calls.
enum class PathRequest { kAuto, kPortable, kHopper };
PathRequest requested_path() {
  const char* env = std::getenv("ADASPA_KERNEL_PATH");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return PathRequest::kAuto;
  if (v == "portable") return PathRequest::kPortable;
  if (v == "hopper") return PathRequest::kHopper;
  ADASPA_CHECK_VALUE(false, "ADASPA_KERNEL_PATH must be auto, portable or hopper, got '", v, "'");
  return PathRequest::kAuto;
}

// The path an op runs on: hopper when the device is compute capability 9.0 and every kernel of
// the op is compiled for the tuple on that path, else portable; ADASPA_KERNEL_PATH forces one.
KernelPath choose_path(const OpKernels& ops, const Tuple& t, int device) {
  const PathRequest req = requested_path();
  if (req == PathRequest::kPortable) return KernelPath::kPortable;
  int major = 0, minor = 0;
  check_launch(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), ops.op);
  check_launch(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), ops.op);
  const bool hopper_device = major == 9 && minor == 0;
  bool hopper_compiled = true;
  for (int i = 0; i < ops.hopper.n; ++i)
    hopper_compiled = hopper_compiled && find_entry(ops.hopper.kernels[i], KernelPath::kHopper, t);
  if (hopper_device && hopper_compiled) return KernelPath::kHopper;
  if (req == PathRequest::kAuto) return KernelPath::kPortable;
  std::string have;
  for (int i = 0; i < ops.hopper.n; ++i)
    have += detail::msg(i ? ", " : "", kernel_name(ops.hopper.kernels[i]), " ",
                        compiled_set(ops.hopper.kernels[i], KernelPath::kHopper));
  ADASPA_CHECK_VALUE(false, "adaspa.", ops.op, ": ADASPA_KERNEL_PATH=hopper, but ",
                    hopper_device ? "" : detail::msg("the device is sm_", major, minor,
                                                     " (the hopper kernels run on compute capability 9.0 only) and "),
                    "the hopper kernels of this build for (dtype, head_dim, block_size) are: ", have,
                    "; asked for (", dtype_name(t.dtype), ", ", t.head_dim, ", ", t.block_size,
                    "). Hopper kernels are built for the _sm90 lines of csrc/instantiations.txt when "
                    "TORCH_CUDA_ARCH_LIST includes 9.0a; ADASPA_KERNEL_PATH=auto or portable runs the portable kernels.");
  return KernelPath::kPortable;
}

Tuple tuple_of(const Tensor& q, int64_t head_dim, int64_t block_size) {
  return {q.scalar_type() == kHalf ? DType::kFloat16 : DType::kBFloat16, head_dim, block_size};
}

// The launchers of an op's kernels on the chosen path, in launch order.
KernelPath find_kernels(const OpKernels& ops, const Tuple& t, int device, KernelLauncher (&out)[2]) {
  const KernelPath path = choose_path(ops, t, device);
  const KernelList& list = ops.on(path);
  for (int i = 0; i < list.n; ++i) {
    const KernelEntry* e = find_entry(list.kernels[i], path, t);
    ADASPA_CHECK_VALUE(e, "adaspa.", ops.op, ": no CUDA kernel compiled for (dtype, head_dim, block_size) = (",
                      dtype_name(t.dtype), ", ", t.head_dim, ", ", t.block_size, "); this build has ",
                      compiled_set(list.kernels[i], path), " (", path_name(path), " ", kernel_name(list.kernels[i]),
                      "). Rebuild without narrowing ADASPA_DTYPES / ADASPA_HEAD_DIMS / ADASPA_BLOCK_SIZES.");
    out[i] = e->launch;
  }
  return path;
}

// The portable kernels' grid is (tiles, heads, batch), the hopper kernels' one-dimensional over
// every (tile, head, batch entry) (tile_scheduler.h), with up to two CTAs per query block (the
// block-128 sparse kernel at D 64 runs one per 64-row half): the limits of all, whichever path runs.
void check_grid(const char* op, const AttnShape& s) {
  ADASPA_CHECK_VALUE(s.heads <= kMaxGridYZ && s.batch <= kMaxGridYZ, "adaspa.", op, ": at most ", kMaxGridYZ,
                    " heads and ", kMaxGridYZ, " batch entries per call, got H=", s.heads, " B=", s.batch);
  const int64_t tiles = 2 * s.batch * s.heads * s.mq;
  ADASPA_CHECK_VALUE(linear_grid_fits(tiles), "adaspa.", op,
                    ": 2 * B * H * ceil(Nq / block_size) must be < 2^31, got ", tiles);
}

// ADASPA_TILE_ORDER (read at every call, for A / B benchmarks): whether the hopper sparse kernel
// takes its tiles longest idx row first (tile_order.h). never (default: the order measured no
// faster than launch order on an H200, NOTES.md); auto: when there are at least
// kOrderMinCtasPerSm idx rows per SM (a row is one CTA, or two at D 64 block 128; below that nearly
// every CTA starts at once and the order has nothing to balance); always.
constexpr int64_t kOrderMinCtasPerSm = 4;
bool want_tile_order(int64_t tiles, int device) {
  const char* env = std::getenv("ADASPA_TILE_ORDER");
  const std::string v = env ? env : "";
  if (v == "always") return true;
  if (v.empty() || v == "never") return false;
  ADASPA_CHECK_VALUE(v == "auto", "ADASPA_TILE_ORDER must be never, auto or always, got '", v, "'");
  int sms = 0;
  check_launch(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "sparse_attn");
  return tiles >= kOrderMinCtasPerSm * sms;
}

// ADASPA_SEARCH_SLOTS=n (tests): at most n scratch slots for the hopper attn_search, so that CTAs
// wait for each other's slots; unset: one per SM.
int search_slots_cap() {
  const char* env = std::getenv("ADASPA_SEARCH_SLOTS");
  if (!env || !*env) return 0;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  ADASPA_CHECK_VALUE(*end == 0 && n >= 1 && n <= (1 << 20), "ADASPA_SEARCH_SLOTS must be a positive integer, got '",
                    std::string(env), "'");
  return static_cast<int>(n);
}

bool empty_grid(const AttnShape& s) { return s.batch == 0 || s.heads == 0 || s.mq == 0; }

void launch(const OpKernels& ops, const AttnShape& s, const Tensor& q, AttnParams& p) {
  KernelLauncher fns[2] = {nullptr, nullptr};
  const int device = tapi::device_index(q);
  const KernelPath path = find_kernels(ops, tuple_of(q, s.head_dim, s.block_size), device, fns);
  // Scratch for the sparse kernel's tile order. Freed on return: the caching allocator hands the
  // memory out again only to work queued on this stream after these kernels.
  Tensor order_ws;
  if (&ops == &kSparseAttn && path == KernelPath::kHopper && p.kmax > 0 && want_tile_order(tile_rows(p), device)) {
    order_ws = tapi::new_empty(q, {tile_order_ints(p)}, kInt);
    p.order_ws = order_ws.mutable_data_ptr<int32_t>();
  }
  // The one-pass search's scratch slots, then their flags (search_ws_floats is a multiple of 128).
  Tensor search_ws;
  if (&ops == &kAttnSearch && path == KernelPath::kHopper) {
    int sms = 0;
    check_launch(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), ops.op);
    const int cap = search_slots_cap();
    p.search_nslots = search_nslots(linear_tiles<kSearchRows>(p), cap ? std::min(cap, sms) : sms);
    const int64_t floats = search_ws_floats(p, p.search_nslots);
    search_ws = tapi::new_empty(q, {floats + p.search_nslots}, kFloat);
    p.search_ws = search_ws.mutable_data_ptr<float>();
    p.search_slots = reinterpret_cast<int32_t*>(p.search_ws + floats);
  }
  const cudaStream_t stream = tapi::current_cuda_stream(device);
  for (int i = 0; i < ops.on(path).n; ++i) check_launch(fns[i](p, stream), ops.op);
}

// Checks shared by sparse_attn and sparse_attn_out.
AttnShape check_sparse(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                       int64_t block_size, std::optional<double> scale) {
  const AttnShape s = check_qkv(op, q, k, &v, block_size, scale);
  check_idx(op, idx, q, s);
  check_grid(op, s);
  ADASPA_CHECK_VALUE(idx.size(3) < (int64_t{1} << 31), "adaspa.", op, ": 'idx' rows must be shorter than 2^31");
  return s;
}

// Runs the sparse kernel writing out (vector aligned: the epilogue's stores need it) and, when
// given, lse.
void run_sparse(const AttnShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& idx, const Tensor& out, Tensor* lse) {
  if (empty_grid(s)) return;
  const Tensor qa = vector_aligned(q), ka = vector_aligned(k), va = vector_aligned(v);
  const Tensor idxc = tapi::contiguous(idx);
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, &va, &out);
  p.q = qa.const_data_ptr(), p.k = ka.const_data_ptr(), p.v = va.const_data_ptr(), p.out = out.mutable_data_ptr();
  p.lse = lse ? lse->mutable_data_ptr<float>() : nullptr;
  p.idx = idxc.const_data_ptr<int32_t>();
  p.kmax = static_cast<int>(idxc.size(3));
  launch(kSparseAttn, s, q, p);
}

std::tuple<Tensor, Tensor> sparse_attn_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                                            int64_t block_size, std::optional<double> scale) {
  const AttnShape s = check_sparse("sparse_attn", q, k, v, idx, block_size, scale);
  const tapi::CudaDeviceGuard guard(tapi::device_index(q));
  Tensor out = tapi::empty_like(q);
  Tensor lse = tapi::new_empty(q, {s.batch, s.heads, s.nq}, kFloat);
  run_sparse(s, q, k, v, idx, out, &lse);
  return {out, lse};
}

// No lse: the runtime's sparse step has no use for it, and an unused B x H x N float32 output can
// stay alive in a torch.compile graph up to the graph's memory peak. An out the kernel cannot
// store into directly (base or strides not 16-byte multiples) is written through an aligned copy,
// like misaligned inputs are read through one.
void sparse_attn_out_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, Tensor out,
                          int64_t block_size, std::optional<double> scale) {
  const char* op = "sparse_attn_out";
  const AttnShape s = check_sparse(op, q, k, v, idx, block_size, scale);
  check_out(op, out, q);
  const tapi::CudaDeviceGuard guard(tapi::device_index(q));
  if (is_vector_aligned(out)) {
    run_sparse(s, q, k, v, idx, out, nullptr);
  } else {
    Tensor staged = tapi::new_empty(q, q.sizes(), q.scalar_type());
    run_sparse(s, q, k, v, idx, staged, nullptr);
    tapi::copy_into(out, staged);
  }
}

std::tuple<Tensor, Tensor, Tensor> attn_search_cuda(const Tensor& q, const Tensor& k, const Tensor& v,
                                                    int64_t block_size, std::optional<double> scale) {
  const char* op = "attn_search";
  const AttnShape s = check_qkv(op, q, k, &v, block_size, scale);
  check_grid(op, s);
  const tapi::CudaDeviceGuard guard(tapi::device_index(q));
  Tensor out = tapi::empty_like(q);
  Tensor lse = tapi::new_empty(q, {s.batch, s.heads, s.nq}, kFloat);
  Tensor scores = tapi::new_empty(q, {s.batch, s.heads, s.mq, s.mk}, kFloat);
  if (empty_grid(s)) return {out, lse, scores};
  const Tensor qa = vector_aligned(q), ka = vector_aligned(k), va = vector_aligned(v);
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, &va, &out);
  p.q = qa.const_data_ptr(), p.k = ka.const_data_ptr(), p.v = va.const_data_ptr(), p.out = out.mutable_data_ptr();
  p.lse = lse.mutable_data_ptr<float>();
  p.scores = scores.mutable_data_ptr<float>();
  launch(kAttnSearch, s, q, p);
  return {out, lse, scores};
}

Tensor block_scores_cuda(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t block_size,
                         std::optional<double> scale) {
  const char* op = "block_scores";
  const AttnShape s = check_qkv(op, q, k, nullptr, block_size, scale);
  check_lse(op, lse, q, s);
  check_grid(op, s);
  const tapi::CudaDeviceGuard guard(tapi::device_index(q));
  Tensor scores = tapi::new_empty(q, {s.batch, s.heads, s.mq, s.mk}, kFloat);
  if (empty_grid(s)) return scores;
  const Tensor qa = vector_aligned(q), ka = vector_aligned(k);
  const Tensor lse_c = tapi::contiguous(lse);
  AttnParams p = base_params(s);
  set_strides(p, qa, ka, nullptr, nullptr);
  p.q = qa.const_data_ptr(), p.k = ka.const_data_ptr();
  p.lse = const_cast<float*>(lse_c.const_data_ptr<float>());
  p.scores = scores.mutable_data_ptr<float>();
  launch(kBlockScores, s, q, p);
  return scores;
}

std::string kernel_path_cuda(const Tensor& q, int64_t block_size, std::string_view op) {
  const OpKernels& ops = op_kernels(op);
  const AttnShape s = check_qkv(ops.op, q, q, nullptr, block_size, std::nullopt);
  KernelLauncher fns[2];
  return path_name(find_kernels(ops, tuple_of(q, s.head_dim, s.block_size), tapi::device_index(q), fns));
}

}  // namespace

ADASPA_LIBRARY_IMPL(adaspa, CUDA, m) {
  m.impl("sparse_attn", ADASPA_KERNEL(&sparse_attn_cuda));
  m.impl("sparse_attn_out", ADASPA_KERNEL(&sparse_attn_out_cuda));
  m.impl("attn_search", ADASPA_KERNEL(&attn_search_cuda));
  m.impl("block_scores", ADASPA_KERNEL(&block_scores_cuda));
  m.impl("kernel_path", ADASPA_KERNEL(&kernel_path_cuda));
}

}  // namespace adaspa

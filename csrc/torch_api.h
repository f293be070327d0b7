// The part of torch the bindings use, in one of two builds chosen by ADASPA_STABLE_ABI (setup.py,
// CMakeLists.txt):
//   1 (the default): torch's stable ABI (torch/csrc/stable, torch/headeronly) compiled with
//     TORCH_TARGET_VERSION = the oldest supported torch (build_facts.TORCH_TARGET). The library
//     then calls torch only through its C shim, so one build loads into every later torch, and the
//     Python module uses the limited API (an abi3 wheel serves every CPython >= 3.10).
//   0: torch's C++ API (ATen, c10, TORCH_LIBRARY), the fallback: tied to the torch release it was
//     compiled with.
// Everything under csrc/ reaches torch through the names below, so both builds compile the same
// bindings. Names live in adaspa::tapi and are called qualified: an unqualified call with an
// at::Tensor argument would also find ATen's functions of the same name.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#if ADASPA_STABLE_ABI
#if defined(ADASPA_WITH_CUDA) && !defined(USE_CUDA)
#define USE_CUDA  // declares the CUDA calls of torch's C shim (current stream)
#endif
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#else
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>
#endif

#if defined(ADASPA_WITH_CUDA)
#include <cuda_runtime_api.h>
#if !ADASPA_STABLE_ABI
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#endif

// Op registration: ADASPA_LIBRARY defines the schemas (csrc/ops.cpp), ADASPA_LIBRARY_IMPL registers
// one backend's kernels, each passed through ADASPA_KERNEL (the stable ABI takes boxed functions).
#if ADASPA_STABLE_ABI
#define ADASPA_LIBRARY(ns, m) STABLE_TORCH_LIBRARY(ns, m)
#define ADASPA_LIBRARY_IMPL(ns, k, m) STABLE_TORCH_LIBRARY_IMPL(ns, k, m)
#define ADASPA_KERNEL(fn) TORCH_BOX(fn)
#else
#define ADASPA_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define ADASPA_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)
#define ADASPA_KERNEL(fn) fn
#endif

namespace adaspa {

#if ADASPA_STABLE_ABI
using Tensor = torch::stable::Tensor;
using Device = torch::stable::Device;
using ScalarType = torch::headeronly::ScalarType;
#else
using Tensor = at::Tensor;
using Device = c10::Device;
using ScalarType = c10::ScalarType;
#endif

constexpr ScalarType kFloat = ScalarType::Float;
constexpr ScalarType kHalf = ScalarType::Half;
constexpr ScalarType kBFloat16 = ScalarType::BFloat16;
constexpr ScalarType kInt = ScalarType::Int;
constexpr ScalarType kLong = ScalarType::Long;
constexpr ScalarType kBool = ScalarType::Bool;
constexpr ScalarType kByte = ScalarType::Byte;

namespace tapi {

#if ADASPA_STABLE_ABI
using IntArrayRef = torch::headeronly::IntHeaderOnlyArrayRef;
#else
using IntArrayRef = c10::IntArrayRef;
#endif

// A tensor of q's sizes, strides, dtype and device (outputs keep the caller's memory layout).
inline Tensor empty_like(const Tensor& t) {
#if ADASPA_STABLE_ABI
  return torch::stable::empty_like(t);
#else
  return at::empty_like(t);
#endif
}

// A contiguous tensor on `like`'s device.
inline Tensor new_empty(const Tensor& like, IntArrayRef sizes, ScalarType dtype) {
#if ADASPA_STABLE_ABI
  return torch::stable::new_empty(like, sizes, dtype);
#else
  return at::empty(sizes, like.options().dtype(dtype));
#endif
}

// t itself when it already has `dtype`, else a converted copy.
inline Tensor to_dtype(const Tensor& t, ScalarType dtype) {
#if ADASPA_STABLE_ABI
  return torch::stable::to(t, dtype);
#else
  return t.to(dtype);
#endif
}

// t itself when it already is on `device` with `dtype`, else a copy there.
inline Tensor to_device(const Tensor& t, const Device& device, ScalarType dtype) {
#if ADASPA_STABLE_ABI
  return torch::stable::to(t, dtype, std::nullopt, device);
#else
  return t.to(device, dtype);
#endif
}

inline Tensor contiguous(const Tensor& t) {
#if ADASPA_STABLE_ABI
  return torch::stable::contiguous(t);
#else
  return t.contiguous();
#endif
}

inline void copy_into(Tensor& dst, const Tensor& src) {
#if ADASPA_STABLE_ABI
  torch::stable::copy_(dst, src);
#else
  dst.copy_(src);
#endif
}

// torch's intra-op thread pool: f(begin, end) over [begin, end) in chunks of at least `grain`.
// In the stable build the threads are torch's own (torch_parallel_for), so torch.set_num_threads
// applies; the classic build compiles ATen's OpenMP pragmas itself (-fopenmp).
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
#if ADASPA_STABLE_ABI
  torch::stable::parallel_for(begin, end, grain, f);
#else
  at::parallel_for(begin, end, grain, f);
#endif
}

inline int64_t num_threads() {
#if ADASPA_STABLE_ABI
  return static_cast<int64_t>(torch::stable::get_num_threads());
#else
  return at::get_num_threads();
#endif
}

// ATen's CPU capability: "DEFAULT", "AVX2" or "AVX512" on x86-64. The stable ABI has no call for
// it, so that build applies ATen's rule itself (compute_cpu_capability in ATen's DispatchStub.cpp):
// ATEN_CPU_CAPABILITY=default / avx2 / avx512 when set, else AVX512 on a CPU with AVX-512 VL, BW, DQ
// and FMA, AVX2 on one with AVX2 and FMA.
inline std::string cpu_capability() {
#if !ADASPA_STABLE_ABI
  return at::get_cpu_capability();
#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (const char* env = std::getenv("ATEN_CPU_CAPABILITY")) {
    if (std::strcmp(env, "avx512") == 0) return "AVX512";
    if (std::strcmp(env, "avx2") == 0) return "AVX2";
    if (std::strcmp(env, "default") == 0) return "DEFAULT";
  }
  __builtin_cpu_init();
  const bool fma = __builtin_cpu_supports("fma");
  if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && fma)
    return "AVX512";
  if (__builtin_cpu_supports("avx2") && fma) return "AVX2";
  return "DEFAULT";
#else
  return "DEFAULT";
#endif
}

// The device index of a tensor (-1 for the CPU).
inline int device_index(const Tensor& t) {
#if ADASPA_STABLE_ABI
  return t.get_device_index();
#else
  return static_cast<int>(t.get_device());
#endif
}

// "cpu", "cuda:0", ... as torch prints a device.
inline std::string device_str(const Device& d) {
#if ADASPA_STABLE_ABI
  std::string s;
  switch (d.type()) {
    case torch::headeronly::DeviceType::CPU: s = "cpu"; break;
    case torch::headeronly::DeviceType::CUDA: s = "cuda"; break;
    case torch::headeronly::DeviceType::Meta: s = "meta"; break;
    default: s = "device type " + std::to_string(static_cast<int>(d.type()));
  }
  return d.has_index() ? s + ":" + std::to_string(d.index()) : s;
#else
  return d.str();
#endif
}

inline const char* dtype_str(ScalarType t) {
#if ADASPA_STABLE_ABI
  return torch::headeronly::toString(t);
#else
  return c10::toString(t);
#endif
}

#if defined(ADASPA_WITH_CUDA)
// Makes `device_index` the current CUDA device for its lifetime. (Hidden like the stable guard it
// holds, which torch declares in a hidden namespace.)
class __attribute__((visibility("hidden"))) CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device_index) : guard_(device_index) {}

 private:
#if ADASPA_STABLE_ABI
  torch::stable::accelerator::DeviceGuard guard_;
#else
  c10::cuda::CUDAGuard guard_;
#endif
};

// torch's current stream on the device (what the caller's torch.cuda.stream() set).
inline cudaStream_t current_cuda_stream(int device_index) {
#if ADASPA_STABLE_ABI
  // torch::stable::accelerator::Stream::nativeHandle() would do, but only from torch 2.13; the
  // AOTInductor shim's call exists in every torch the stable build targets.
  // TORCH_ERROR_CODE_CHECK (headeronly) exists in every such torch; its STABLE_ twin only from
  // 2.12 or so, and the headers of the torch a user builds against may be older than ours.
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device_index, &stream));
  return static_cast<cudaStream_t>(stream);
#else
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_index)).stream();
#endif
}
#endif  // ADASPA_WITH_CUDA

}  // namespace tapi
}  // namespace adaspa

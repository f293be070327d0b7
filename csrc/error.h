// Error messages built without std::ostream. On the device machine (torch 2.11, its g++), any
// number formatted through an ostream inside this extension crashed in libstdc++
// (std::ostream::_M_insert<long>, seen 2026-11-26 on an H200 image); c10::str does exactly that,
// so TORCH_CHECK with non-string arguments is avoided here. Messages are assembled from
// std::string pieces and handed to TORCH_CHECK_* as one string (c10's no-stream fast path).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>
#include <type_traits>

namespace adaspa::detail {

inline void append(std::string& s, const char* x) { s += x; }
inline void append(std::string& s, const std::string& x) { s += x; }
inline void append(std::string& s, char x) { s += x; }
template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>,
                                       int> = 0>
inline void append(std::string& s, T x) {
  s += std::to_string(x);
}
inline void append(std::string& s, double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", x);
  s += buf;
}
inline void append(std::string& s, c10::IntArrayRef a) {
  s += "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  s += "]";
}
inline void append(std::string& s, at::ScalarType t) { s += c10::toString(t); }
inline void append(std::string& s, const c10::Device& d) { s += d.str(); }

template <typename... A>
std::string msg(const A&... a) {
  std::string s;
  (append(s, a), ...);
  return s;
}

}  // namespace adaspa::detail

#define ADASPA_CHECK_VALUE(cond, ...) \
  do { if (C10_UNLIKELY(!(cond))) { TORCH_CHECK_VALUE(false, ::adaspa::detail::msg(__VA_ARGS__)); } } while (0)
#define ADASPA_CHECK_TYPE(cond, ...) \
  do { if (C10_UNLIKELY(!(cond))) { TORCH_CHECK_TYPE(false, ::adaspa::detail::msg(__VA_ARGS__)); } } while (0)
#define ADASPA_CHECK(cond, ...) \
  do { if (C10_UNLIKELY(!(cond))) { TORCH_CHECK(false, ::adaspa::detail::msg(__VA_ARGS__)); } } while (0)

// Error messages built without std::ostream, raised as Python's ValueError / TypeError /
// RuntimeError in both builds of csrc/torch_api.h.
//
// No ostream: on the device machine (torch 2.11, its g++), any number formatted through an ostream
// inside this extension crashed in libstdc++ (std::ostream::_M_insert<long>, seen 2026-11-26 on an
// H200 image); c10::str does exactly that. Messages are assembled from std::string pieces.
//
// Exception types: the classic build throws c10's ValueError / TypeError / Error (TORCH_CHECK_*),
// which torch turns into the Python exceptions. The stable ABI has no typed errors (its
// STD_TORCH_CHECK throws std::runtime_error, a RuntimeError in Python), so that build throws what
// pybind11, through which torch.ops calls a kernel from Python, translates itself:
// std::invalid_argument -> ValueError, and for TypeError a pybind11::builtin_exception, pybind11's
// base for exceptions that set their own Python error (unchanged since pybind11 2.2; torch 2.10-2.14
// ship 3.x). Both derive from std::exception, so a caller outside Python (C++, AOTInductor) still
// gets the message.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "torch_api.h"

#if ADASPA_STABLE_ABI
#include <Python.h>

namespace pybind11 {
// pybind11's declaration (pybind11/detail/common.h), exported like PYBIND11_EXPORT_EXCEPTION so
// that torch's pybind11 catches it by name.
class __attribute__((visibility("default"))) builtin_exception : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  virtual void set_error() const = 0;
};
}  // namespace pybind11
#endif

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
inline void append(std::string& s, tapi::IntArrayRef a) {
  s += "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  s += "]";
}
inline void append(std::string& s, ScalarType t) { s += tapi::dtype_str(t); }
inline void append(std::string& s, const Device& d) { s += tapi::device_str(d); }

template <typename... A>
std::string msg(const A&... a) {
  std::string s;
  (append(s, a), ...);
  return s;
}

#if ADASPA_STABLE_ABI
class TypeError final : public pybind11::builtin_exception {
 public:
  using builtin_exception::builtin_exception;
  void set_error() const override { PyErr_SetString(PyExc_TypeError, what()); }
};

[[noreturn]] inline void throw_value_error(const std::string& m) { throw std::invalid_argument(m); }
[[noreturn]] inline void throw_type_error(const std::string& m) { throw TypeError(m); }
[[noreturn]] inline void throw_runtime_error(const std::string& m) { throw std::runtime_error(m); }
#else
[[noreturn]] inline void throw_value_error(const std::string& m) { TORCH_CHECK_VALUE(false, m); }
[[noreturn]] inline void throw_type_error(const std::string& m) { TORCH_CHECK_TYPE(false, m); }
[[noreturn]] inline void throw_runtime_error(const std::string& m) { TORCH_CHECK(false, m); }
#endif

}  // namespace adaspa::detail

#define ADASPA_CHECK_VALUE(cond, ...) \
  do { if (__builtin_expect(!(cond), 0)) ::adaspa::detail::throw_value_error(::adaspa::detail::msg(__VA_ARGS__)); } while (0)
#define ADASPA_CHECK_TYPE(cond, ...) \
  do { if (__builtin_expect(!(cond), 0)) ::adaspa::detail::throw_type_error(::adaspa::detail::msg(__VA_ARGS__)); } while (0)
#define ADASPA_CHECK(cond, ...) \
  do { if (__builtin_expect(!(cond), 0)) ::adaspa::detail::throw_runtime_error(::adaspa::detail::msg(__VA_ARGS__)); } while (0)

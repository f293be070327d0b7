// The op schemas, defined once. Backends register kernels with ADASPA_LIBRARY_IMPL
// (csrc/cpu/*.cpp, csrc/cuda/*.cpp); fake kernels are registered from Python (adaspa_ext/ops.py).
// The stable-ABI build compiles this file on Python's limited API (Py_LIMITED_API, set by setup.py).
#include <Python.h>

#include "torch_api.h"

#include "build_facts.h"  // generated per build (csrc/build_facts.py): ADASPA_BUILD_FACTS

extern "C" {
// `import adaspa_ext._C` loads this library so the registrations below run. The module also
// carries BUILD_FACTS, a JSON string of what this library was compiled with (version, torch,
// CUDA archs, kernel tuples), read by adaspa_ext/_build_config.py.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "adaspa custom ops", -1, nullptr};
  PyObject* m = PyModule_Create(&module_def);
  if (m != nullptr && PyModule_AddStringConstant(m, "BUILD_FACTS", ADASPA_BUILD_FACTS) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
}

ADASPA_LIBRARY(adaspa, m) {
  m.def("sparse_attn(Tensor q, Tensor k, Tensor v, Tensor idx, int block_size=64, float? scale=None) -> (Tensor out, Tensor lse)");
  // sparse_attn writing into a caller's tensor (e.g. a slice of a larger output): no concatenation.
  m.def("sparse_attn_out(Tensor q, Tensor k, Tensor v, Tensor idx, Tensor(a!) out, int block_size=64, float? scale=None) -> ()");
  m.def("attn_search(Tensor q, Tensor k, Tensor v, int block_size=64, float? scale=None) -> (Tensor out, Tensor lse, Tensor scores)");
  m.def("block_scores(Tensor q, Tensor k, Tensor lse, int block_size=64, float? scale=None) -> Tensor");
  m.def("select_blocks(Tensor scores, Tensor keep, Tensor? forced_kv=None) -> (Tensor idx, Tensor kept_mass)");
  // The cached packed pattern -> the idx of one sparse_attn call (text query blocks' full lists included).
  m.def("mask_to_idx(Tensor packed, int mk, int width, int text_qblocks=0, bool text_first=False) -> Tensor idx");
  // Which kernel path (portable / hopper) `op` would run on for q and block_size: CUDA only.
  m.def("kernel_path(Tensor q, int block_size=64, str op=\"sparse_attn\") -> str");
}

"""What the imported adaspa_ext._C was compiled with, read from the library itself.

setup.py (and CMakeLists.txt) compile these facts into _C (csrc/build_facts.py -> the generated
build_facts.h -> the module constant _C.BUILD_FACTS), so they always describe the library that is
loaded: a source tree rebuilt for another configuration, or a wheel built from it, cannot leave a
stale description behind.

  VERSION        package version with its local label: '0.1.0+cpu', '0.1.0+cu130.sm80.sm90a', ...
  TORCH_VERSION  torch the library was compiled against
  STABLE_ABI     True: the bindings use torch's stable ABI (the default build): the library loads
                 into TORCH_TARGET and every later torch; False: torch's C++ API (ADASPA_STABLE_ABI=0),
                 only into the torch it was compiled against
  TORCH_TARGET   the oldest torch the library loads into ('2.10'), or for a classic build the one
                 torch release it needs ('2.14.1')
  WITH_CUDA      whether CUDA kernels are compiled in
  CUDA_VERSION   CUDA of that torch, None for a CPU-only build
  CUDA_ARCHS     TORCH_CUDA_ARCH_LIST entries compiled, e.g. ['8.0', '9.0a']
  CUDA_KERNELS   [kernel, kernel path, dtype, head_dim, block_size] rows compiled for the CUDA kernels
"""
from __future__ import annotations

import json

from ._loader import load_C

FACTS: dict = json.loads(load_C().BUILD_FACTS)

VERSION: str = FACTS["version"]
TORCH_VERSION: str = FACTS["torch_version"]
STABLE_ABI: bool = FACTS["stable_abi"]
TORCH_TARGET: str = FACTS["torch_target"]
WITH_CUDA: bool = FACTS["with_cuda"]
CUDA_VERSION: str | None = FACTS["cuda_version"]
CUDA_ARCHS: list[str] = FACTS["cuda_archs"]
CUDA_KERNELS: list[list] = FACTS["cuda_kernels"]

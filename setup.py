"""Build adaspa_ext._C: CPU kernels always, CUDA kernels when a toolkit is used.

Environment (every variable is also listed in README.md):
  ADASPA_STABLE_ABI      1 (default): bindings on torch's stable ABI, one library for every torch >=
                         build_facts.TORCH_TARGET and an abi3 module; 0: torch's C++ API (the
                         fallback), tied to the torch release it is built with. csrc/torch_api.h.
  ADASPA_BUILD_CUDA      unset: build CUDA when a toolkit is found; 0/1 force off/on.
  TORCH_CUDA_ARCH_LIST   CUDA archs to compile (default "8.0;9.0a"; 8.0 code also runs on 8.6/8.9).
  ADASPA_CUTLASS_DIR     CUTLASS/CuTe include dir (default: the nvidia-cutlass wheel).
  ADASPA_DTYPES / ADASPA_HEAD_DIMS / ADASPA_BLOCK_SIZES   narrow the compiled kernel tuples.
  ADASPA_PTXAS_VERBOSE   1: print registers / spills per kernel (ptxas -v).
  MAX_JOBS               parallel compile jobs (torch's variable).

What was compiled (version with its local label, torch, CUDA archs, kernel tuples) is written to
build/generated/build_facts.h and compiled into _C (csrc/build_facts.py); nothing in the source
tree is rewritten.
"""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "third_party"))
sys.path.insert(0, str(ROOT / "csrc"))
import locate_cuda  # noqa: E402  (third_party/locate_cuda.py)

# torch.utils.cpp_extension fixes CUDA_HOME at import time; a wrapper `nvcc` on PATH would make
# it guess the wrong root, so settle it first.
_cuda_home = locate_cuda.find_cuda_home()
if _cuda_home and not os.environ.get("CUDA_HOME"):
    os.environ["CUDA_HOME"] = _cuda_home

from setuptools import setup  # noqa: E402
import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

import build_facts  # noqa: E402  (csrc/build_facts.py)
import generate_kernels  # noqa: E402  (csrc/generate_kernels.py)

DEFAULT_ARCHS = build_facts.DEFAULT_ARCHS
PY_LIMITED_API = "cp310"  # the abi3 tag of a stable-ABI build: CPython 3.10 and later (python_requires)
EXTRAS = {
    "demo": ["matplotlib>=3.7", "tqdm>=4.60"],
    # the processors wrapped by adaspa_ext.integrations.diffusers were checked against 0.42.1
    "diffusers": ["diffusers>=0.42.1,<0.43"],
}


def read_sources():
    sections, cur = {"cpu": [], "cpu_kernels": [], "cuda": []}, None
    for line in (ROOT / "csrc" / "sources.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            cur = line.strip("[]")
            continue
        sections[cur].append(line)
    return sections


def want_stable_abi():
    flag = os.environ.get("ADASPA_STABLE_ABI", "1").strip() or "1"
    if flag not in ("0", "1"):
        raise SystemExit(f"ADASPA_STABLE_ABI must be 0 or 1, got {flag!r}")
    if flag == "1":
        have = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
        need = tuple(int(x) for x in build_facts.TORCH_TARGET.split("."))
        if have < need:
            raise SystemExit(f"the stable-ABI build needs torch >= {build_facts.TORCH_TARGET} to compile "
                             f"(found {torch.__version__}); ADASPA_STABLE_ABI=0 builds against this torch's C++ API")
    return flag == "1"


def want_cuda():
    flag = os.environ.get("ADASPA_BUILD_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        raise SystemExit(f"ADASPA_BUILD_CUDA must be 0, 1 or unset, got {flag!r}")
    found = cpp_extension.CUDA_HOME is not None and os.path.isfile(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    if flag == "1" and not found:
        raise SystemExit("ADASPA_BUILD_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
    if flag == "1" and torch.version.cuda is None:
        raise SystemExit("ADASPA_BUILD_CUDA=1 but this torch is a CPU-only build")
    return found and torch.version.cuda is not None if flag == "" else flag == "1"


def read_nvcc_flags():
    """csrc/nvcc_flags.txt: the code-generation flags every build of the kernels uses."""
    lines = (ROOT / "csrc" / "nvcc_flags.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def make_extension():
    src = read_sources()
    gen_dir = ROOT / "build" / "generated"
    gen_dir.mkdir(parents=True, exist_ok=True)
    include_dirs = [str(ROOT / "include"), str(ROOT / "csrc"), str(gen_dir)]
    # No -std flag: torch's build adds the standard its own headers need (C++17 up to torch 2.13,
    # C++20 from 2.14). Forcing C++20 against torch 2.11 crashed in libstdc++ stream code.
    cxx = ["-O3", "-Wall", "-Wno-unused-function"]
    stable_abi = want_stable_abi()
    if stable_abi:
        # Only torch's C shim and header-only code, as of the oldest supported torch; the Python
        # module on the limited API (torch adds -DPy_LIMITED_API for py_limited_api extensions).
        cxx += ["-DADASPA_STABLE_ABI=1", f"-DTORCH_TARGET_VERSION={build_facts.torch_target_version()}"]
    else:
        # -fopenmp: at::parallel_for is header code whose threads are `#pragma omp parallel`; without
        # the flag it runs on one thread. The GOMP symbols resolve at load time to the libgomp torch
        # itself loads, so the extension and torch share one OpenMP runtime (and torch.set_num_threads).
        # (The stable build's parallel_for runs inside torch.)
        cxx += ["-DADASPA_STABLE_ABI=0", "-fopenmp"]
    with_cuda = want_cuda()
    archs, kernels = [], []
    sources = src["cpu"] + src["cpu_kernels"]
    if with_cuda:
        archs_env = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        archs = [a.strip() for a in archs_env.replace(" ", ";").split(";") if a.strip()]
        kernels = generate_kernels.build_record(generate_kernels.tuples(archs))
        gen = generate_kernels.generate(gen_dir, archs)
        sources += src["cuda"] + [str(p.relative_to(ROOT)) for p in gen]
        (gen_dir / "build_info.h").write_text(
            "// Generated by setup.py. Do not edit.\n"
            f'#define ADASPA_CUDA_ARCHS "{";".join(archs)}"\n')
        import locate_cutlass  # third_party/locate_cutlass.py
        include_dirs.append(locate_cutlass.include_dir())
        cxx.append("-DADASPA_WITH_CUDA")
    facts = build_facts.facts(torch.__version__, with_cuda, torch.version.cuda, archs, kernels, stable_abi)
    facts_header = build_facts.write_header(gen_dir, facts)
    nvcc = [
        "-O3", "-DADASPA_WITH_CUDA",
        "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_HALF2_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        *read_nvcc_flags(),
        # cute is header-heavy; these keep nvcc warnings about it quiet.
        "-diag-suppress=177,550", "-Xcudafe", "--diag_suppress=esa_on_defaulted_function_ignored",
    ]
    if os.environ.get("ADASPA_PTXAS_VERBOSE") == "1":
        nvcc.append("-Xptxas=-v")
    Ext = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    ext = Ext(
        name="adaspa_ext._C",
        sources=sources,
        include_dirs=include_dirs,
        depends=[str(facts_header)],  # a build with other facts (archs, tuples, torch) relinks _C
        extra_compile_args={"cxx": cxx, "nvcc": nvcc} if with_cuda else {"cxx": cxx},
        py_limited_api=stable_abi,  # _C.abi3.so, and no libtorch_python
    )
    return ext, facts


class BuildExt(cpp_extension.BuildExtension.with_options(use_ninja=True)):
    """torch's BuildExtension; an editable install (`pip install -e .`, what `make demo` runs)
    compiles in build/temp.* like `setup.py build_ext --inplace` instead of a fresh temporary
    directory, so ninja recompiles only what changed."""

    def finalize_options(self):
        super().finalize_options()
        if getattr(self, "editable_mode", False):
            build = self.get_finalized_command("build")
            self.build_temp = os.path.join(build.build_base, f"temp.{build.plat_name}-{sys.implementation.cache_tag}")

    def copy_extensions_to_source(self):
        """In-place builds: the library of the other ABI kind (_C.abi3.so against
        _C.cpython-311-x86_64-linux-gnu.so) left in the package by an earlier build is removed,
        or Python would keep importing the version-specific one, which it tries first."""
        super().copy_extensions_to_source()
        for ext in self.extensions:
            built = pathlib.Path(self.get_ext_fullpath(ext.name)).name
            for old in (ROOT / "adaspa_ext").glob("_C.*"):
                if old.name != built and old.suffix in (".so", ".pyd"):
                    old.unlink()


EXTENSION, FACTS = make_extension()
# A stable-ABI library loads into every torch from its target on; a classic one needs exactly the
# torch release it was built with (local label ignored: +cu130 etc.). Neither can say which CUDA
# major torch must be built for: the version label does (cu130).
TORCH_REQUIREMENT = f"torch{'>=' if FACTS['stable_abi'] else '=='}{FACTS['torch_target']}"

setup(
    name="adaspa_ext",
    version=FACTS["version"],
    description="AdaSpa: training-free adaptive block-sparse attention for video diffusion transformers",
    packages=["adaspa_ext", "adaspa_ext.integrations"],
    ext_modules=[EXTENSION],
    install_requires=[TORCH_REQUIREMENT],
    extras_require=EXTRAS,
    cmdclass={"build_ext": BuildExt},
    python_requires=">=3.10",
    # the wheel tag of a stable-ABI build: cp310-abi3 (one wheel for every CPython >= 3.10)
    options={"bdist_wheel": {"py_limited_api": PY_LIMITED_API}} if FACTS["stable_abi"] else {},
    zip_safe=False,
)

"""The build: locators, the generated tuple list, the arch guard, CMake from the same source list,
and a wheel that installs into a fresh venv."""
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

import adaspa_ext
from adaspa_ext import _build_config, ops

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "third_party"))
sys.path.insert(0, str(ROOT / "csrc"))
import locate_cuda as cuda_locator  # noqa: E402
import locate_cutlass as cutlass_locator  # noqa: E402
import build_facts  # noqa: E402
import generate_kernels  # noqa: E402


def test_build_config_records_the_build():
    # the facts are read from the loaded library itself, never from a file a build wrote
    assert _build_config.FACTS == json.loads(adaspa_ext._C.BUILD_FACTS)
    assert _build_config.VERSION == adaspa_ext.__version__
    if _build_config.STABLE_ABI:  # built against any torch, loaded into this one (>= the target)
        assert _build_config.TORCH_TARGET == build_facts.TORCH_TARGET
        release = [int(x) for x in torch.__version__.split("+")[0].split(".")[:2]]
        assert release >= [int(x) for x in build_facts.TORCH_TARGET.split(".")], torch.__version__
    else:  # loads only into the torch it was built against
        assert _build_config.TORCH_VERSION == torch.__version__
        assert _build_config.TORCH_TARGET == torch.__version__.split("+")[0]
    base, label = _build_config.VERSION.split("+")
    assert base == build_facts.BASE_VERSION
    if _build_config.WITH_CUDA:
        assert _build_config.CUDA_ARCHS
        tuples = {tuple(t) for t in _build_config.CUDA_KERNELS}
        kernels = {"flash_sparse", "flash_dense", "score"}  # portable; a 9.0a build adds flash_search
        assert {k for k, *_ in tuples} == kernels | ({"flash_search"} if "9.0a" in _build_config.CUDA_ARCHS else set())
        assert {path for _, path, *_ in tuples} <= set(ops.KERNEL_PATHS)
        assert label.startswith("cu" + torch.version.cuda.replace(".", ""))
    else:
        assert _build_config.CUDA_KERNELS == [] and _build_config.CUDA_ARCHS == [] and label == "cpu"


def _dynamic_symbols(lib, *flags):
    res = subprocess.run(["nm", "-D", *flags, str(lib)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return [ln.split()[-1] for ln in res.stdout.splitlines() if ln.strip()]


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="binutils not found")
def test_stable_abi_library_calls_only_torch_c_shim():
    """A stable-ABI build reaches torch only through its C shim (extern "C" aoti_torch_* /
    torch_* functions, which later torch releases keep): no C++ symbol of c10 / ATen / torch, no
    libtorch_python, a Python module on the limited API (abi3)."""
    if not _build_config.STABLE_ABI:
        pytest.skip("classic build (ADASPA_STABLE_ABI=0)")
    lib = pathlib.Path(adaspa_ext._C.__file__)
    assert lib.name == "_C.abi3.so", lib.name
    undefined = _dynamic_symbols(lib, "--undefined-only")
    cpp_torch = [s for s in undefined if s.startswith("_Z") and any(ns in s for ns in ("3c10", "2at", "5torch"))]
    assert not cpp_torch, cpp_torch[:20]
    shim = [s for s in undefined if s.startswith(("aoti_torch_", "torch_"))]
    assert "torch_library_impl" in shim and "torch_parallel_for" in shim, shim
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "torch_python" not in needed, needed
    python = [s for s in undefined if s.startswith(("Py", "_Py"))]
    assert set(python) <= {"PyModule_Create2", "PyModule_AddStringConstant", "PyErr_SetString", "PyExc_TypeError",
                           "_Py_Dealloc"}, python


def test_local_version_labels_tell_builds_apart(monkeypatch):
    for var in build_facts.FILTER_VARS:
        monkeypatch.delenv(var, raising=False)
    def records(archs):
        return generate_kernels.build_record(generate_kernels.tuples(archs))

    assert build_facts.local_version(False, None, [], []) == "cpu"
    assert build_facts.local_version(True, "13.0", ["8.0", "9.0a"], records(["8.0", "9.0a"])) == "cu130.sm80.sm90a"
    assert build_facts.local_version(True, "13.0", ["8.0+PTX"], records(["8.0+PTX"])) == "cu130.sm80ptx"
    monkeypatch.setenv("ADASPA_DTYPES", "bf16")
    monkeypatch.setenv("ADASPA_HEAD_DIMS", "64")
    narrow = records(["8.0"])
    assert build_facts.local_version(True, "13.0", ["8.0"], narrow) == "cu130.sm80.bf16.hd64.bs64.bs128"
    assert [build_facts.from_cmake_arch(a) for a in ("80-real", "90a-real", "80", "86-virtual")] == \
        ["8.0", "9.0a", "8.0+PTX", "8.6+PTX"]
    f = build_facts.facts("2.14.1+cu130", True, "13.0", ["8.0"], narrow)
    assert f["version"] == "0.1.0+cu130.sm80.bf16.hd64.bs64.bs128" and f["cuda_kernels"] == [list(t) for t in narrow]
    assert f["stable_abi"] and f["torch_target"] == build_facts.TORCH_TARGET == "2.10"
    f = build_facts.facts("2.14.1+cu130", True, "13.0", ["8.0"], narrow, stable_abi=False)
    assert not f["stable_abi"] and f["torch_target"] == "2.14.1"
    assert build_facts.torch_target_version("2.10") == "0x020a000000000000"  # as torch/csrc/stable/version.h


def test_unbuilt_source_tree_says_how_to_build(tmp_path):
    """A source tree without the compiled library: `import adaspa_ext` fails with one line that
    says how to build it (not a partially-initialised-module error)."""
    shutil.copytree(ROOT / "adaspa_ext", tmp_path / "adaspa_ext",
                    ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (tmp_path / "csrc").mkdir()
    (tmp_path / "setup.py").write_text("")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The editable install of this checkout (make build-test) adds a finder that would resolve
    # adaspa_ext._C of any adaspa_ext package to this checkout's library: leave it out, as in an
    # environment where nothing is installed.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not "
            "getattr(f, '__module__', '').startswith('__editable__')]; import adaspa_ext")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: adaspa_ext is not built"), res.stderr
    assert f"`make demo` (or `make build-demo`) in {tmp_path}" in last and "pip install" in last, last
    assert "partially initialized" not in res.stderr


def test_generated_tuples_and_filters(tmp_path, monkeypatch):
    for var in ("ADASPA_DTYPES", "ADASPA_HEAD_DIMS", "ADASPA_BLOCK_SIZES"):  # a narrowed dev build's shell
        monkeypatch.delenv(var, raising=False)
    portable = generate_kernels.tuples(["8.0"])
    assert len(portable) == 24 and ("flash_sparse", "sm80", "bf16", 128, 64) in portable
    hopper = set(generate_kernels.tuples(["8.0", "9.0a"])) - set(portable)
    assert hopper == {(k, "sm90", dt, d, b) for k in ("flash_sparse", "flash_search", "score")
                      for dt in ("fp16", "bf16") for d in (64, 128) for b in (64, 128)}
    monkeypatch.setenv("ADASPA_DTYPES", "bf16")
    monkeypatch.setenv("ADASPA_HEAD_DIMS", "128")
    paths = generate_kernels.generate(tmp_path, ["8.0"])
    names = sorted(p.name for p in paths)
    assert names == sorted(["kernel_registry.cu"] + [f"{k}_sm80_bf16_hd128_bs{b}.cu"
                                                      for k in ("flash_sparse", "flash_dense", "score")
                                                      for b in (64, 128)])
    names = sorted(p.name for p in generate_kernels.generate(tmp_path, ["8.0", "9.0a"]))
    assert [n for n in names if "_sm90_" in n] == sorted(f"{k}_sm90_bf16_hd128_bs{b}.cu"
                                                         for k in ("flash_sparse", "flash_search", "score")
                                                         for b in (64, 128))
    registry = (tmp_path / "kernel_registry.cu").read_text()
    assert "KernelPath::kPortable, DType::kBFloat16, 128, 64, &run_sm80<Kernel::kFlashSparse, DType::kBFloat16, 128, 64>" in registry
    monkeypatch.setenv("ADASPA_DTYPES", "fp8")
    with pytest.raises(ValueError, match="filtered out every kernel tuple"):
        generate_kernels.tuples()


def test_sm90_tuples_only_for_a_9_0a_target(tmp_path, monkeypatch):
    """An sm90 line is compiled (and registered as the hopper path) only when 9.0a is a target."""
    lines = tmp_path / "instantiations.txt"
    lines.write_text("flash_sparse sm80 bf16 128 64\nflash_sparse sm90 bf16 128 64\n")
    for var in ("ADASPA_DTYPES", "ADASPA_HEAD_DIMS", "ADASPA_BLOCK_SIZES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(generate_kernels, "TUPLE_FILE", lines)
    assert generate_kernels.tuples(["8.0"]) == [("flash_sparse", "sm80", "bf16", 128, 64)]
    assert generate_kernels.tuples(["8.0+PTX", "9.0a"])[1] == ("flash_sparse", "sm90", "bf16", 128, 64)
    assert len(generate_kernels.tuples(["80", "90a"])) == 2  # CMake spelling
    assert generate_kernels.build_record(generate_kernels.tuples(["9.0a"])) == [
        ["flash_sparse", "portable", "bf16", 128, 64], ["flash_sparse", "hopper", "bf16", 128, 64]]
    generate_kernels.generate(tmp_path / "gen", ["9.0a"])
    sm90 = (tmp_path / "gen" / "flash_sparse_sm90_bf16_hd128_bs64.cu").read_text()
    assert '#include "adaspa/launch_sm90.h"' in sm90 and "run_sm90<Kernel::kFlashSparse" in sm90
    assert "KernelPath::kHopper" in (tmp_path / "gen" / "kernel_registry.cu").read_text()
    generate_kernels.generate(tmp_path / "gen", ["8.0"])
    assert not (tmp_path / "gen" / "flash_sparse_sm90_bf16_hd128_bs64.cu").exists()


def test_compiled_tuples_per_op(monkeypatch):
    monkeypatch.setattr(_build_config, "CUDA_KERNELS", [
        ["flash_sparse", "portable", "bf16", 64, 64], ["flash_dense", "portable", "bf16", 64, 64],
        ["score", "portable", "bf16", 64, 64], ["flash_sparse", "hopper", "bf16", 64, 64],
        ["flash_search", "hopper", "bf16", 64, 64], ["flash_dense", "hopper", "bf16", 64, 128]])
    assert ops.compiled_tuples("sparse_attn") == [("hopper", "bf16", 64, 64), ("portable", "bf16", 64, 64)]
    # the hopper attn_search is flash_search alone; a hopper flash_dense is not an attn_search
    assert ops.compiled_tuples("attn_search") == [("hopper", "bf16", 64, 64), ("portable", "bf16", 64, 64)]
    assert ops.compiled_tuples("block_scores") == [("portable", "bf16", 64, 64)]  # no hopper score kernel


def test_use_kernel_path_sets_and_restores_the_env(monkeypatch):
    monkeypatch.delenv("ADASPA_KERNEL_PATH", raising=False)
    with ops.use_kernel_path("portable"):
        assert os.environ["ADASPA_KERNEL_PATH"] == "portable"
    assert "ADASPA_KERNEL_PATH" not in os.environ
    with pytest.raises(ValueError, match="kernel path must be one of"):
        with ops.use_kernel_path("sm90"):
            pass


def test_cuda_locator_ignores_wrapper_nvcc(tmp_path, monkeypatch):
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\nexec /nowhere/nvcc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    home = cuda_locator.find_cuda_home()
    assert home != str(tmp_path)  # never the wrapper's parent: it has no libcudart
    if home is not None:
        assert cuda_locator._is_toolkit(home)
    monkeypatch.setenv("CUDA_HOME", "/opt/custom-cuda")
    assert cuda_locator.find_cuda_home() == "/opt/custom-cuda"


def test_cutlass_locator(tmp_path, monkeypatch):
    monkeypatch.delenv("ADASPA_CUTLASS_DIR", raising=False)
    inc = pathlib.Path(cutlass_locator.include_dir())
    assert (inc / "cute" / "tensor.hpp").is_file()
    monkeypatch.setenv("ADASPA_CUTLASS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not contain cute/tensor.hpp"):
        cutlass_locator.include_dir()


def test_arch_guard(monkeypatch):
    monkeypatch.setattr(_build_config, "CUDA_ARCHS", ["8.0", "9.0a"])
    ops._arch_supported.cache_clear()
    try:
        assert ops._arch_supported((8, 0)) and ops._arch_supported((8, 6)) and ops._arch_supported((8, 9))
        assert ops._arch_supported((9, 0)) and not ops._arch_supported((10, 0)) and not ops._arch_supported((7, 5))
        monkeypatch.setattr(_build_config, "CUDA_ARCHS", ["8.0"])
        ops._arch_supported.cache_clear()
        assert not ops._arch_supported((9, 0))  # sm_80 code does not run on sm_90
        monkeypatch.setattr(_build_config, "CUDA_ARCHS", ["8.0+PTX"])
        ops._arch_supported.cache_clear()
        assert ops._arch_supported((9, 0)) and ops._arch_supported((12, 0))  # compute_80 PTX, JIT-compiled
        assert not ops._arch_supported((7, 5))
        monkeypatch.setattr(_build_config, "CUDA_ARCHS", ["9.0a+PTX"])
        ops._arch_supported.cache_clear()
        assert ops._arch_supported((9, 0)) and not ops._arch_supported((10, 0))  # compute_90a PTX is sm_90 only
    finally:
        ops._arch_supported.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found (CMakeLists.txt is optional)")
def test_cmake_builds_the_same_sources(tmp_path):
    build = tmp_path / "cmake"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True, capture_output=True)
    res = subprocess.run([str(build / "adaspa_cpp_tests")], capture_output=True, text=True)
    assert res.returncode == 0 and " 0 failed" in res.stdout, res.stdout
    lib = next(build.glob("_C*.so"))
    code = (f"import torch; torch.ops.load_library({str(lib)!r}); "
            "q = torch.randn(1, 1, 70, 64); idx = torch.tensor([[[[0, 1], [1, -1]]]], dtype=torch.int32); "
            "out, lse = torch.ops.adaspa.sparse_attn(q, q, q, idx); print(out.shape)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "torch.Size([1, 1, 70, 64])" in res.stdout, res.stderr


def _dists_needed_by(root_req: str):
    """importlib.metadata distributions of root_req and everything it requires (extras and
    markers evaluated for this interpreter), as installed here."""
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    seen, todo = {}, [Requirement(root_req)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # optional or not for this platform
        seen[name] = dist
        for text in dist.requires or []:
            r = Requirement(text)
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(r)
    return list(seen.values())


def _borrow(dists, into: pathlib.Path) -> None:
    """Symlink the files of `dists` (top-level names of their RECORD) into `into`."""
    into.mkdir()
    for dist in dists:
        for f in dist.files or []:
            top = f.parts[0]
            src = pathlib.Path(dist.locate_file(top))
            if top != ".." and src.exists() and not (into / top).exists():
                (into / top).symlink_to(src)


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv(tmp_path):
    """`pip wheel --no-build-isolation .` for exactly the archs and ABI kind of the current build
    (the compiled objects in build/ are reused): the wheel's name carries the build's local version
    label, its metadata asks for torch (>= the target of a stable-ABI build, an abi3 wheel; exactly
    this torch for a classic one) and declares the extras, building it leaves the source tree alone, and
    `pip install '<wheel>[demo]'` into a fresh venv (torch and its dependencies borrowed from this
    one, matplotlib / tqdm installed by the extra) runs a CPU op and `python -m adaspa_ext.demo`."""
    # this venv's tools first, as make does: another ninja would rebuild every object from scratch
    env = dict(os.environ, ADASPA_BUILD_CUDA="1" if _build_config.WITH_CUDA else "0",
               ADASPA_STABLE_ABI="1" if _build_config.STABLE_ABI else "0",
               MAX_JOBS=str(os.cpu_count() or 2), PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}")
    if _build_config.WITH_CUDA:  # the same archs and (possibly narrowed) kernel tuples
        env["TORCH_CUDA_ARCH_LIST"] = ";".join(_build_config.CUDA_ARCHS)
        for i, var in enumerate(("ADASPA_DTYPES", "ADASPA_HEAD_DIMS", "ADASPA_BLOCK_SIZES"), 2):
            env[var] = ",".join(sorted({str(t[i]) for t in _build_config.CUDA_KERNELS}))
    tree_before = _source_tree_state()
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, env=env, cwd=ROOT)
    assert _source_tree_state() == tree_before, "building a wheel changed files in the source tree"
    whl = next(wheels.glob("adaspa_ext-*.whl"))
    assert whl.name.startswith(f"adaspa_ext-{_build_config.VERSION}-"), (whl.name, _build_config.VERSION)
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        wheel_tags = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    if _build_config.STABLE_ABI:  # every torch from the target on, every CPython >= 3.10
        assert f"torch>={build_facts.TORCH_TARGET}" in requires, requires
        assert "-cp310-abi3-" in whl.name and "Tag: cp310-abi3-" in wheel_tags, (whl.name, wheel_tags)
    else:
        assert f"torch=={torch.__version__.split('+')[0]}" in requires, requires
    assert {"Provides-Extra: demo", "Provides-Extra: diffusers"} <= set(meta.splitlines())
    assert any(r.startswith("matplotlib") and 'extra == "demo"' in r for r in requires), requires
    assert any(r.startswith("tqdm") and 'extra == "demo"' in r for r in requires), requires
    assert any(r.startswith("diffusers") and 'extra == "diffusers"' in r for r in requires), requires

    venv = tmp_path / "fresh"
    # Nothing of the source tree may leak in: no PYTHONPATH, a working directory outside the repo.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean, cwd=tmp_path)
    py = venv / "bin" / "python"
    site = subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   text=True, env=clean, cwd=tmp_path).strip()
    # torch and its dependencies come from this venv (a multi-GB reinstall proves nothing here); pip
    # sees them as installed, so the torch pin is checked, and installs what the demo extra adds.
    borrowed = tmp_path / "borrowed"
    _borrow(_dists_needed_by("torch"), borrowed)
    assert not (borrowed / "matplotlib").exists() and not (borrowed / "tqdm").exists()
    pathlib.Path(site, "borrowed_torch.pth").write_text(f"{borrowed}\n")
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{whl}[demo]"], capture_output=True, text=True,
                         env=clean, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    code = ("import adaspa_ext, torch, os; assert 'fresh' in adaspa_ext.__file__, adaspa_ext.__file__; "
            "from adaspa_ext import _build_config as c; print(c.VERSION, c.WITH_CUDA, c.CUDA_ARCHS); "
            "q = torch.randn(1, 2, 100, 64, dtype=torch.bfloat16); "
            "o, lse, s = adaspa_ext.attn_search(q, q, q); print('ok', tuple(s.shape))")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert res.returncode == 0, res.stderr
    assert "ok (1, 2, 2, 2)" in res.stdout
    assert f"{_build_config.VERSION} {_build_config.WITH_CUDA} {_build_config.CUDA_ARCHS}" in res.stdout
    res = subprocess.run([str(py), "-m", "adaspa_ext.demo", "--device", "cpu", "--steps", "5", "--layers", "1",
                          "--out", "demo_out"], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "search_fused" in res.stdout and "sparse" in res.stdout and "total" in res.stdout, res.stdout
    assert (tmp_path / "demo_out" / "block_mask.png").is_file() and (tmp_path / "demo_out" / "sparsity_sweep.png").is_file()


def _source_tree_state():
    """Tracked and untracked (not ignored) files of the checkout with their contents' hashes."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.split(b"\0")
    return {f: hashlib.sha256((ROOT / f.decode()).read_bytes()).hexdigest()
            for f in out if f and (ROOT / f.decode()).is_file()}


@pytest.mark.slow
def test_hopper_kernels_compile_for_sm90a(tmp_path, monkeypatch):
    """Machines without a Hopper GPU (CI) still compile every hopper tuple for sm_90a, with the
    extension's nvcc flags, so a compile error in the sm90 kernels fails here and not on the GPU;
    and no kernel spills registers to local memory (ptxas -v) or has its wgmmas serialised (C7512),
    which would cost speed silently."""
    cuda = cuda_locator.find_cuda_home()
    nvcc = pathlib.Path(cuda or "/nonexistent") / "bin" / "nvcc"
    if not nvcc.is_file():
        pytest.skip("no CUDA toolkit")
    try:
        cutlass = cutlass_locator.include_dir()
    except FileNotFoundError:
        pytest.skip("no CUTLASS headers")
    for var in build_facts.FILTER_VARS:
        monkeypatch.delenv(var, raising=False)
    hopper = [t for t in generate_kernels.tuples(["9.0a"]) if t[1] == "sm90"]
    assert hopper, "csrc/instantiations.txt has no sm90 line"
    gen = [p for p in generate_kernels.generate(tmp_path / "gen", ["9.0a"]) if "_sm90_" in p.name]
    assert len(gen) == len(hopper)
    unit = tmp_path / "hopper_tuples.cu"  # one translation unit: the headers are parsed once
    unit.write_text("".join(f'#include "{p}"\n' for p in gen))
    flags = [ln.strip() for ln in (ROOT / "csrc" / "nvcc_flags.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    res = subprocess.run([str(nvcc), "-std=c++17", "-O3", *flags, "-gencode", "arch=compute_90a,code=sm_90a",
                          "-Xptxas", "-v", f"-I{ROOT / 'include'}", f"-I{cutlass}", "-c", str(unit),
                          "-o", str(tmp_path / "h.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    # ptxas's C7512: wgmma serialised for want of registers (a loop shape alone can cause it)
    serialised = [ln for ln in res.stderr.splitlines() if "C7512" in ln]
    assert not serialised, "\n".join(serialised)
    # (kernel, its spill line): ptxas names the entry function before reporting on it
    spills, kernel = [], None
    for ln in res.stderr.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", ln)
        if m:
            kernel = m.group(1)
        elif "spill" in ln:
            spills.append((kernel, ln))
    assert spills, res.stderr[-2000:]  # ptxas reported on the kernels
    bad = [f"{k}: {ln}" for k, ln in spills
           if " 0 bytes spill stores, 0 bytes spill loads" not in ln and not _allowed_spill(k, ln)]
    assert not bad, "\n".join(bad)


def _allowed_spill(kernel, line):
    """The D 64 wide sparse kernels (block 64 and 128) bounded to three CTAs per SM (128
    registers): ptxas spills 16 bytes, stored before the main loop and loaded after it (SASS read
    when each was adopted; measured faster than the alternatives). Any other spill, or more than
    that, fails."""
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
    return (kernel is not None and "FlashWideTraits" in kernel and "Li64ELb1ELi3E" in kernel
            and m is not None and int(m.group(1)) <= 16 and int(m.group(2)) <= 24)

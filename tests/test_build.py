"""The build: locators, the generated tuple list, the arch guard, CMake from the same source list,
and a wheel that installs into a fresh venv."""
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

import adaspa_ext
from adaspa_ext import _build_config, ops

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "third_party"))
sys.path.insert(0, str(ROOT / "csrc"))
import locate_cuda as cuda_locator  # noqa: E402
import locate_cutlass as cutlass_locator  # noqa: E402
import generate_kernels  # noqa: E402


def test_build_config_records_the_build():
    assert _build_config.VERSION == adaspa_ext.__version__
    if _build_config.WITH_CUDA:
        assert _build_config.CUDA_ARCHS
        tuples = {tuple(t) for t in _build_config.CUDA_KERNELS}
        assert {k for k, *_ in tuples} == {"flash_sparse", "flash_dense", "score"}
        assert {path for _, path, *_ in tuples} <= set(ops.KERNEL_PATHS)
    else:
        assert _build_config.CUDA_KERNELS == []


def test_generated_tuples_and_filters(tmp_path, monkeypatch):
    for var in ("ADASPA_DTYPES", "ADASPA_HEAD_DIMS", "ADASPA_BLOCK_SIZES"):  # a narrowed dev build's shell
        monkeypatch.delenv(var, raising=False)
    full = generate_kernels.tuples()
    assert len(full) == 24 and ("flash_sparse", "sm80", "bf16", 128, 64) in full
    monkeypatch.setenv("ADASPA_DTYPES", "bf16")
    monkeypatch.setenv("ADASPA_HEAD_DIMS", "128")
    paths = generate_kernels.generate(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(["kernel_registry.cu"] + [f"{k}_sm80_bf16_hd128_bs{b}.cu"
                                                      for k in ("flash_sparse", "flash_dense", "score")
                                                      for b in (64, 128)])
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
        ["flash_dense", "hopper", "bf16", 64, 64]])
    assert ops.compiled_tuples("sparse_attn") == [("hopper", "bf16", 64, 64), ("portable", "bf16", 64, 64)]
    assert ops.compiled_tuples("attn_search") == [("portable", "bf16", 64, 64)]  # no hopper score kernel
    assert ops.compiled_tuples("block_scores") == [("portable", "bf16", 64, 64)]


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


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv(tmp_path):
    """`pip wheel --no-build-isolation .` for exactly the archs of the current build (the compiled
    objects in build/ are reused), installed into a fresh venv that borrows torch, then a CPU op."""
    env = dict(os.environ, ADASPA_BUILD_CUDA="1" if _build_config.WITH_CUDA else "0",
               MAX_JOBS=str(os.cpu_count() or 2))
    if _build_config.WITH_CUDA:
        env["TORCH_CUDA_ARCH_LIST"] = ";".join(_build_config.CUDA_ARCHS)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, env=env, cwd=ROOT)
    whl = next(wheels.glob("adaspa_ext-*.whl"))
    venv = tmp_path / "fresh"
    # Nothing of the source tree may leak in: no PYTHONPATH, a working directory outside the repo.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean, cwd=tmp_path)
    py = venv / "bin" / "python"
    site = subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   text=True, env=clean, cwd=tmp_path).strip()
    # torch and friends come from the project venv (a multi-GB reinstall proves nothing here)
    pathlib.Path(site, "borrowed_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)], check=True,
                   env=clean, cwd=tmp_path)
    code = ("import adaspa_ext, torch, os; assert 'fresh' in adaspa_ext.__file__, adaspa_ext.__file__; "
            "from adaspa_ext import _build_config as c; print(c.WITH_CUDA, c.CUDA_ARCHS); "
            "q = torch.randn(1, 2, 100, 64, dtype=torch.bfloat16); "
            "o, lse, s = adaspa_ext.attn_search(q, q, q); print('ok', tuple(s.shape))")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert res.returncode == 0, res.stderr
    assert "ok (1, 2, 2, 2)" in res.stdout
    assert str(_build_config.CUDA_ARCHS) in res.stdout

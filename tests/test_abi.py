"""The stable-ABI wheel built here runs in another torch and another CPython (issue 15).

Opt-in: `make test-abi` (ADASPA_TEST_ABI=1); it downloads a torch wheel, so `make test` skips it.
  1. builds a CPU-only stable-ABI wheel (ADASPA_BUILD_CUDA=0) from a copy of this checkout against
     this venv's torch (the pinned one), or takes ADASPA_ABI_WHEEL;
  2. makes a fresh venv with another CPython minor: ADASPA_ABI_PYTHON, else the first of 3.12
     (the GPU machine's), 3.13, 3.10 found on PATH or under ~/.pyenv, else this interpreter;
  3. installs torch ADASPA_ABI_TORCH (default 2.11.0) from the package index. The PyPI wheels are
     CUDA builds: their CUDA libraries are borrowed from this venv when torch imports with them (same
     CUDA major: 2.11 and the pinned 2.14 are both CUDA 13), else installed too (2.10: CUDA 12, ~3 GB);
  4. installs the wheel (no dependencies: its `torch>=2.10` requirement is checked here) and runs
     tests/test_ops.py, test_cpu.py and test_bad_input.py on the CPU in that venv, from a directory
     outside the checkout: every op against the references, every bad-input message and type;
  5. builds the extension from source in that venv, against that torch's headers (CUDA host
     bindings and one kernel tuple for 8.0 too when nvcc is here).
"""
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "csrc"))
import build_facts  # noqa: E402

TORCH = os.environ.get("ADASPA_ABI_TORCH", "2.11.0")
TEST_FILES = ("conftest.py", "util.py", "test_ops.py", "test_cpu.py", "test_bad_input.py")

pytestmark = pytest.mark.skipif(os.environ.get("ADASPA_TEST_ABI") != "1",
                                reason="opt-in (downloads a torch wheel): make test-abi")


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _run(args, **kw):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, args))}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def other_python():
    """An interpreter of another CPython minor (>= 3.10) that can make a venv, else this one."""
    if os.environ.get("ADASPA_ABI_PYTHON"):
        return os.environ["ADASPA_ABI_PYTHON"]
    for minor in (12, 13, 10):
        if minor == sys.version_info.minor:
            continue
        found = [shutil.which(f"python3.{minor}")]
        found += sorted(pathlib.Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
        for cand in filter(None, found):
            ok = subprocess.run([str(cand), "-c", "import venv, ensurepip"], capture_output=True).returncode == 0
            if ok:
                return str(cand)
    return sys.executable


def build_wheel(tmp):
    """CPU-only stable-ABI wheel from a copy of the checkout (tracked and untracked, not ignored
    files), so the build leaves this tree's build/ alone."""
    if os.environ.get("ADASPA_ABI_WHEEL"):
        return pathlib.Path(os.environ["ADASPA_ABI_WHEEL"])
    src = copy_checkout(tmp / "src")
    env = _clean_env(ADASPA_BUILD_CUDA="0", ADASPA_STABLE_ABI="1", MAX_JOBS=os.environ.get("MAX_JOBS", "2"),
                     PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", tmp / "wheels", src],
         env=env, cwd=tmp)
    return next((tmp / "wheels").glob("adaspa_ext-*.whl"))


def copy_checkout(dst):
    """Tracked and untracked, not ignored files of this checkout -> dst (once)."""
    if not dst.is_dir():
        files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).split("\0")
        for f in filter(None, files):
            if (ROOT / f).is_file():
                (dst / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, dst / f)
    return dst


def wheel_metadata(whl):
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        tags = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
        libs = [n for n in z.namelist() if n.startswith("adaspa_ext/_C")]
    return meta, tags, libs


def import_torch(py, env):
    return subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                          env=env)


def test_stable_wheel_in_another_torch_and_python(tmp_path):
    from packaging.requirements import Requirement

    whl = build_wheel(tmp_path)
    meta, tags, libs = wheel_metadata(whl)
    assert "Tag: cp310-abi3-" in tags and whl.name.endswith(".whl") and "-cp310-abi3-" in whl.name, (whl.name, tags)
    assert libs == ["adaspa_ext/_C.abi3.so"], libs
    torch_req = next(Requirement(ln.split(":", 1)[1].strip()) for ln in meta.splitlines()
                     if ln.startswith("Requires-Dist: torch"))
    assert str(torch_req.specifier) == f">={build_facts.TORCH_TARGET}" and TORCH in torch_req.specifier, str(torch_req)

    py = other_python()
    venv = tmp_path / "venv"
    env = _clean_env()
    _run([py, "-m", "venv", venv], env=env, cwd=tmp_path)
    vpy = venv / "bin" / "python"
    pip = [vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", f"torch=={TORCH}"], env=env, cwd=tmp_path)
    # torch's own requirements but its CUDA libraries (and triton, unused on the CPU)
    code = ("from pip._vendor.packaging.requirements import Requirement; import importlib.metadata as m; "
            "rs = [Requirement(r) for r in m.requires('torch')]; "
            "print('\\n'.join(f'{r.name}{r.specifier}' for r in rs if (r.marker is None or r.marker.evaluate({'extra': ''})) "
            "and not r.name.startswith(('nvidia-', 'cuda-', 'triton'))))")
    deps = _run([vpy, "-c", code], env=env, cwd=tmp_path).split()
    _run([*pip, *deps, "pytest", "numpy"], env=env, cwd=tmp_path)
    site = _run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).strip()
    here_nvidia = pathlib.Path(torch.__file__).parent.parent / "nvidia"
    if here_nvidia.is_dir():
        borrowed = tmp_path / "borrowed"
        borrowed.mkdir()
        (borrowed / "nvidia").symlink_to(here_nvidia)
        pathlib.Path(site, "abi_test_borrowed.pth").write_text(f"{borrowed}\n")
    if import_torch(vpy, env).returncode != 0:  # another CUDA major: install torch with its libraries
        pathlib.Path(site, "abi_test_borrowed.pth").unlink(missing_ok=True)
        _run([*pip, f"torch=={TORCH}"], env=env, cwd=tmp_path)
    res = import_torch(vpy, env)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.strip().split("+")[0] == TORCH, res.stdout

    _run([*pip, "--no-deps", whl], env=env, cwd=tmp_path)
    tests = tmp_path / "tests"
    tests.mkdir()
    for f in TEST_FILES:
        shutil.copy2(ROOT / "tests" / f, tests / f)
    probe = ("import sys, torch, adaspa_ext; from adaspa_ext import _build_config as c; "
             "assert 'venv' in adaspa_ext._C.__file__, adaspa_ext._C.__file__; "
             "print(f'Python {sys.version.split()[0]}, torch {torch.__version__}; wheel built against torch '"
             "f'{c.TORCH_VERSION}, stable ABI {c.STABLE_ABI}, target torch {c.TORCH_TARGET}')")
    versions = _run([vpy, "-c", probe], env=env, cwd=tmp_path).strip()
    assert f"stable ABI True, target torch {build_facts.TORCH_TARGET}" in versions, versions
    res = subprocess.run([str(vpy), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not gpu and not slow",
                          *(str(tests / f) for f in TEST_FILES if f.startswith("test_"))],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    print(f"\ntest-abi: {whl.name} in {versions}: {summary}")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary, summary

    # Built from source against that torch's headers: a stable-ABI call or operator the pinned torch's
    # headers have and an older supported torch's lack breaks `pip install .` there, not the wheel. The
    # CUDA host bindings too (one narrow tuple for 8.0) when a toolkit is here.
    src = copy_checkout(tmp_path / "src")
    _run([*pip, "setuptools", "ninja"], env=env, cwd=tmp_path)
    cuda = shutil.which("nvcc") is not None or pathlib.Path("/usr/local/cuda/bin/nvcc").is_file()
    cutlass = pathlib.Path(torch.__file__).parent.parent / "cutlass_library" / "source" / "include"
    build_env = dict(env, ADASPA_BUILD_CUDA="1" if cuda else "0", ADASPA_STABLE_ABI="1",
                     MAX_JOBS=os.environ.get("MAX_JOBS", "2"), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    if cuda:
        build_env.update(TORCH_CUDA_ARCH_LIST="8.0", ADASPA_DTYPES="bf16", ADASPA_HEAD_DIMS="64",
                         ADASPA_BLOCK_SIZES="64", ADASPA_CUTLASS_DIR=str(cutlass))
    _run([vpy, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", tmp_path / "src_wheels", src],
         env=build_env, cwd=tmp_path)
    print(f"test-abi: built from source against torch {TORCH} (CUDA bindings: {cuda})")

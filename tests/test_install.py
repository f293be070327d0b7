"""What a new user gets after `make demo` / `make test`: the package is installed in the venv, so
the README's code, the demo and the benchmark scripts run from any directory, as written."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOT_RUN = "<!-- not run by tests/test_install.py"


def readme_python_blocks():
    """Every ```python block of README.md that is not marked as needing outside resources."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[:m.start()].rstrip().splitlines()[-1]
        if not before.startswith(NOT_RUN):
            blocks.append(m.group(1))
    return blocks


def run_outside(tmp_path, args, timeout=600):
    """Run this interpreter in an empty directory, without PYTHONPATH: only an installed
    adaspa_ext can be imported there."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    res = run_outside(tmp_path_factory.mktemp("probe"), ["-c", "import adaspa_ext; print(adaspa_ext.__file__)"])
    assert res.returncode == 0, (
        "adaspa_ext is not importable outside the repository: `make build-test` installs it into the venv "
        f"(pip install --no-build-isolation -e .).\n{res.stderr}")
    assert pathlib.Path(res.stdout.strip()).parent == ROOT / "adaspa_ext", res.stdout  # this checkout, editable


def test_readme_has_runnable_snippets():
    blocks = readme_python_blocks()
    assert len(blocks) >= 2 and any("attn_search" in b for b in blocks) and any("adaspa_attention" in b for b in blocks)


@pytest.mark.parametrize("i", range(len(readme_python_blocks())))
def test_readme_python_snippet_runs_outside_the_repo(installed, tmp_path, i):
    script = tmp_path / f"readme_snippet_{i}.py"
    script.write_text(readme_python_blocks()[i])
    res = run_outside(tmp_path, [str(script)])
    assert res.returncode == 0, res.stderr


def test_demo_runs_outside_the_repo(installed, tmp_path):
    res = run_outside(tmp_path, ["-m", "adaspa_ext.demo", "--device", "cpu", "--steps", "3", "--layers", "1",
                                 "--no-sweep"])
    assert res.returncode == 0, res.stderr
    assert "total" in res.stdout and "adaspa ms  total attention time" in res.stdout  # the table and its legend
    assert (tmp_path / "out" / "demo" / "block_mask.png").is_file()


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py")))
def test_benchmark_scripts_start_outside_the_repo(installed, tmp_path, script):
    res = run_outside(tmp_path, [str(ROOT / "benchmarks" / script), "--help"])
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not found")
def test_makefile_user_settings_win_and_sm90_gets_90a(tmp_path):
    """ADASPA_BUILD_CUDA, TORCH_CUDA_ARCH_LIST, ADASPA_STABLE_ABI and MAX_JOBS from the environment
    reach the build unchanged; a GPU of compute capability 9.0 is built for 9.0a; `make wheel`
    defaults to the stable ABI and 8.0+PTX;9.0a (dry runs: make -n)."""
    # nothing of the outer environment or of an outer make (make test) may decide the outcome
    drop = {"ADASPA_BUILD_CUDA", "TORCH_CUDA_ARCH_LIST", "ADASPA_STABLE_ABI", "MAX_JOBS", "MAKEFLAGS", "MFLAGS",
            "MAKELEVEL"}
    base = {k: v for k, v in os.environ.items() if k not in drop}

    def dry(target, env_extra=(), args=()):
        env = dict(base, **dict(env_extra))
        res = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}", *args],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return res.stdout
    user = {"ADASPA_BUILD_CUDA": "0", "TORCH_CUDA_ARCH_LIST": "8.6;9.0a", "MAX_JOBS": "3"}
    for target in ("build-demo", "build-test"):
        out = dry(target, user)
        assert "MAX_JOBS='3' ADASPA_BUILD_CUDA='0' TORCH_CUDA_ARCH_LIST='8.6;9.0a'" in out, out
        out = dry(target, {"TORCH_CUDA_ARCH_LIST": ""}, ["GPU_CC=9.0"])  # as nvidia-smi reports an H100 / H200
        assert "ADASPA_BUILD_CUDA='1' TORCH_CUDA_ARCH_LIST='9.0a'" in out, out
        assert "pip install -q --no-build-isolation --no-deps -e ." in out, out
    # make wheel: the stable-ABI wheel for sm_80 (+ PTX for newer GPUs) and sm_90a unless told otherwise
    out = dry("wheel", {"TORCH_CUDA_ARCH_LIST": ""}, ["NVCC_FOUND=/usr/local/cuda/bin/nvcc"])
    assert "ADASPA_BUILD_CUDA='1' TORCH_CUDA_ARCH_LIST='8.0+PTX;9.0a'" in out and "ADASPA_STABLE_ABI='1'" in out, out
    assert "pip wheel -q --no-build-isolation --no-deps -w 'dist' ." in out, out
    out = dry("wheel", dict(user, ADASPA_STABLE_ABI="0"))
    assert "MAX_JOBS='3' ADASPA_BUILD_CUDA='0' TORCH_CUDA_ARCH_LIST='8.6;9.0a'" in out, out
    assert "ADASPA_STABLE_ABI='0'" in out, out

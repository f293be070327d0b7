import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: takes minutes (builds, big shapes); deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Every device-agnostic test runs on the CPU and, where present, on the GPU with the same code.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


# The CUDA kernels are compiled per (kernel path, dtype, head dim, block size) tuple and a dev build
# may narrow them (ADASPA_DTYPES / ...), so GPU cases come from what this build compiled, and a
# GPU case on a tuple outside it skips instead of failing.
DTYPE_OF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def op_params(op, dtypes, head_dims, block_sizes):
    """(device, path, dtype, d, bs) cases of op: the CPU over the product of the lists (path None),
    CUDA over every tuple compiled for op on each kernel path (marked gpu)."""
    from adaspa_ext import ops
    cpu = [pytest.param("cpu", None, dt, d, bs, id=f"cpu-{str(dt)[6:]}-d{d}-bs{bs}")
           for dt in dtypes for d in head_dims for bs in block_sizes]
    gpu = [pytest.param("cuda", path, DTYPE_OF[dt], d, bs, marks=pytest.mark.gpu, id=f"cuda-{path}-{dt}-d{d}-bs{bs}")
           for path, dt, d, bs in ops.compiled_tuples(op)]
    return cpu + gpu


def use_path(monkeypatch, path):
    """Force the kernel path of the CUDA ops for one test (None: leave the default, auto); a hopper
    case skips on a device that cannot run it."""
    if path is None:
        return
    if path == "hopper" and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the hopper kernels run on compute capability 9.0 only")
    monkeypatch.setenv("ADASPA_KERNEL_PATH", path)


def require_kernels(device, op, dtype, d, bs, path=None):
    """Skip a CUDA case whose (dtype, d, bs) this build compiled for no kernel path of op (or not
    for `path`)."""
    if torch.device(device).type != "cuda":
        return
    from adaspa_ext import ops
    name = {v: k for k, v in DTYPE_OF.items()}[dtype]
    if not any(t[1:] == (name, d, bs) and path in (None, t[0]) for t in ops.compiled_tuples(op)):
        pytest.skip(f"{op} ({name}, {d}, {bs}) is not compiled {f'on the {path} path ' if path else ''}in this build")

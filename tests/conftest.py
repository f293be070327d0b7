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

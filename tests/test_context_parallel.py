"""AdaSpa under diffusers' Ulysses context parallelism, on the CPU: gloo, 2 and 4 processes, tiny
random models. Each rank runs the model in one process and then under
ContextParallelConfig(ulysses_degree=N); outputs and phase logs must match (tests/cp_worker.py)."""
import socket

import pytest
import torch

pytest.importorskip("diffusers")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import cp_worker  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def spawn(world, cases):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(cp_worker.main, args=(world, port, cases, results), nprocs=world)
    return dict(results)


def test_ulysses_2_ranks_every_family():
    """Wan (diffusers' own plan), HunyuanVideo (text last, padded) and CogVideoX (text first, batched
    CFG) with adaspa's plans, Wan with 8 heads and rebalanced heads;
    bad configurations refused."""
    cases = [("wan", False), ("hunyuan", True), ("cogvideox", False),
             ("wan8", True, 0.05), "refusals"]
    res = spawn(2, cases)
    rep = res[("wan8", True)]
    # recall threshold 0.05: every head passes, half of them go to the sparse tier, half to the dense
    # one; balancing gives each rank the same kept blocks
    assert rep["layers"] and rep["after_max"] <= rep["before_max"]
    assert rep["after_max"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.slow
def test_ulysses_4_ranks():
    res = spawn(4, [("wan8", True, 0.05), ("wan8", False, 0.05)])
    assert res[("wan8", True)]["after_max"] <= res[("wan8", True)]["before_max"]
    off = res[("wan8", False)]
    assert off["after"] == off["before"]

"""Worker processes of tests/test_context_parallel.py: gloo on the CPU, one process per rank, each
running a case on a tiny model once in one process (the reference) and once under diffusers'
Ulysses context parallelism, and checking that outputs and phase logs are the same."""
import logging
import os

import torch
import torch.distributed as dist

import tiny_models
from adaspa_ext.config import AdaSpaConfig
from adaspa_ext.integrations import diffusers as AD

TIMESTEPS = [1000.0 - 20 * i for i in range(8)]
# 8 steps: dense, fused search, sparse, sparse, ..., cached search at 5, sparse
CONFIG = dict(num_steps=8, warmup_steps=2, search_steps=(2, 5), sparsity=0.6)


def cpu_shims():
    """diffusers 0.42.1 on a machine without an accelerator: enable_parallelism places rank r on
    device r % torch.accelerator.device_count() (0 here: a division by zero), and the cp hooks log
    through Logger.warning_once, which transformers (imported by every real pipeline) adds."""
    torch.accelerator.device_count = lambda: 1
    if not hasattr(logging.Logger, "warning_once"):
        logging.Logger.warning_once = logging.Logger.warning


def wan8(layers=2):
    """Tiny Wan with 8 heads (4 per rank at degree 2, 2 at degree 4)."""
    torch.manual_seed(0)
    m, _ = tiny_models._tiny("wan1.3b-480p", num_layers=layers, num_attention_heads=8, attention_head_dim=64)
    x = torch.randn(1, 4, 4, 16, 16)
    cond, uncond = torch.randn(1, 12, 16), torch.randn(1, 12, 16)

    def call(t, branch=0):
        return m(x, torch.tensor([t]), cond if branch == 0 else uncond, return_dict=False)[0]
    return m, call


MODELS = {**tiny_models.FAMILIES, **tiny_models.GENERIC, "wan8": wan8}


def run_case(world, name, balance, recall_threshold=0.8):
    from diffusers import ContextParallelConfig
    model, call = MODELS[name]()
    kwargs = {"self_attention": "attn1"} if name in tiny_models.GENERIC else {}
    branches = (0, 1) if name.startswith("wan") or name == "hunyuan1.5" else (0,)
    cfg = AdaSpaConfig(recall_threshold=recall_threshold, **CONFIG)

    def run():
        return [call(t, b) if len(branches) > 1 else call(t) for t in TIMESTEPS for b in branches]

    with torch.no_grad():
        session = AD.apply(model, cfg, **kwargs)
        ref, ref_log = run(), list(session.log)
        AD.remove(model)
        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world), cp_plan=AD.cp_plan(model))
        procs = [m.processor for m in model.modules() if hasattr(m, "processor")]
        session = AD.apply(model, cfg, balance_heads=balance, **kwargs)
        out = run()
        assert session.log == ref_log, (session.log[:8], ref_log[:8])
        for r, o in zip(ref, out):
            torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
        report = AD.ulysses_imbalance(model)
        AD.remove(model)
        assert [m.processor for m in model.modules() if hasattr(m, "processor")] == procs
        if name != "cogvideox":  # diffusers' own Ulysses attention again (CogVideoX's processor has none)
            torch.testing.assert_close(call(TIMESTEPS[0], 0) if len(branches) > 1 else call(TIMESTEPS[0]), ref[0],
                                       rtol=1e-4, atol=1e-4)
    return report


def refusals(world):
    from diffusers import ContextParallelConfig
    import pytest
    model, _ = tiny_models._tiny("wan1.3b-480p", num_layers=1, num_attention_heads=3)
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    with pytest.raises(ValueError, match="3 attention heads, not divisible by ulysses_degree=2"):
        AD.apply(model, AdaSpaConfig())
    assert not hasattr(model, "_adaspa")
    model, _ = tiny_models.wan()
    model.enable_parallelism(config=ContextParallelConfig(ring_degree=world))
    with pytest.raises(ValueError, match="ring attention .*ring_degree=2.* is not supported"):
        AD.apply(model, AdaSpaConfig())
    with pytest.raises(ValueError, match="HunyuanVideo15Transformer3DModel under context parallelism is not supported"):
        AD.cp_plan(tiny_models.hunyuan15()[0])


def main(rank, world, port, cases, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cpu_shims()
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    try:
        for case in cases:
            if case == "refusals":
                refusals(world)
            else:
                name, balance, *rest = case
                report = run_case(world, name, balance, *rest)
                if rank == 0:
                    results[(name, balance)] = report
    finally:
        dist.destroy_process_group()

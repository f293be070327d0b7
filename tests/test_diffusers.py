"""diffusers integration on tiny random transformers of each family (CPU)."""
import types

import pytest
import torch

pytest.importorskip("diffusers")
import tiny_models  # noqa: E402
from adaspa_ext.config import AdaSpaConfig
from adaspa_ext.integrations import diffusers as AD

TIMESTEPS = [1000.0 - 20 * i for i in range(50)]


def expected_phase(cfg, step):
    p = cfg.schedule_phase(step)
    return {"dense": "dense", "sparse": "sparse"}.get(p, "search_fused" if step == cfg.search_steps[0] else "search_cached")


@pytest.mark.parametrize("family", list(tiny_models.FAMILIES))
def test_sparsity_zero_matches_own_processors(family):
    model, call = tiny_models.FAMILIES[family]()
    cfg = AdaSpaConfig(sparsity=0.0, head_adaptive=False, num_steps=5, warmup_steps=1, search_steps=(1, 3))
    with torch.no_grad():
        refs = [call(t) for t in TIMESTEPS[:5]]
        originals = [b for b in model.modules() if hasattr(b, "processor")]
        procs = [a.processor for a in originals]
        session = AD.apply(model, cfg)
        outs = [call(t) for t in TIMESTEPS[:5]]
        assert {p for *_, p in session.log} == {"dense", "search_fused", "sparse", "search_cached"}
        for r, o in zip(refs, outs):
            torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
        AD.remove(model)
        assert [a.processor for a in originals] == procs
        torch.testing.assert_close(call(TIMESTEPS[0]), refs[0], rtol=0, atol=0)


def test_phase_log_50_steps_separate_cfg_branches():
    model, call = tiny_models.wan()
    cfg = AdaSpaConfig()
    session = AD.apply(model, cfg)
    with torch.no_grad():
        for t in TIMESTEPS:
            for branch in (0, 1):
                assert torch.isfinite(call(t, branch)).all()
    want = [(s, br, (0, layer), expected_phase(cfg, s)) for s in range(50) for br in (0, 1) for layer in range(2)]
    assert session.log == want
    # separate cond / uncond states per layer
    assert all(len(session.layer_states((0, layer))) == 2 for layer in range(2))
    AD.remove(model)


@pytest.mark.parametrize("family", ["cogvideox", "hunyuan"])
def test_phase_log_50_steps_single_call_per_step(family):
    model, call = tiny_models.FAMILIES[family]()
    cfg = AdaSpaConfig()
    session = AD.apply(model, cfg)
    with torch.no_grad():
        for t in TIMESTEPS:
            assert torch.isfinite(call(t)).all()
    layers = sorted({key for _, _, key, _ in session.log})
    assert session.log == [(s, 0, key, expected_phase(cfg, s)) for s in range(50) for key in layers]
    AD.remove(model)


def test_new_generation_resets_the_schedule():
    model, call = tiny_models.wan()
    session = AD.apply(model, AdaSpaConfig())
    with torch.no_grad():
        for t in TIMESTEPS[:15]:
            call(t)
        assert session.step == 14
        call(TIMESTEPS[0])  # timestep jumps up: a new generation
    assert session.step == 0 and session.log[-1][3] == "dense"
    assert all(st.mask is None for sts in session._layers.values() for st in sts)
    AD.remove(model)


def test_wan22_two_experts_share_one_schedule():
    high, call_high = tiny_models.wan(seed=0)
    low, call_low = tiny_models.wan(seed=1)
    pipe = types.SimpleNamespace(transformer=high, transformer_2=low)
    cfg = AdaSpaConfig()
    session = AD.apply(pipe, cfg)
    with torch.no_grad():
        for i, t in enumerate(TIMESTEPS):
            (call_high if i < 25 else call_low)(t)
    by_key = {}
    for step, _, key, phase in session.log:
        by_key.setdefault(key[0], []).append((step, phase))
    assert by_key[0][-1] == (24, "sparse")
    # the low-noise expert first runs at step 25: no pattern yet, so it searches there, then reuses
    assert by_key[1][0] == (25, "search_fused") and by_key[1][2] == (26, "sparse")
    assert (30, "search_cached") in by_key[1]
    AD.remove(pipe)
    assert not hasattr(high, "_adaspa") and not hasattr(low, "_adaspa")


def test_apply_twice_and_unsupported_models_raise():
    model, _ = tiny_models.wan()
    AD.apply(model)
    with pytest.raises(RuntimeError, match="already applied"):
        AD.apply(model)
    AD.remove(model)
    with pytest.raises(TypeError, match="expected a diffusers pipeline"):
        AD.apply(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_repeated_blocks(backend):
    """No graph break inside attention (fullgraph), at most 4 graphs per block over a 50-step run
    (dense, fused search, sparse, cached search), and the same outputs as eager."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    model, call = tiny_models.wan(num_layers=3)
    steps = 50 if backend == "aot_eager" else 12
    cfg = AdaSpaConfig(sparsity=0.5, num_steps=steps, warmup_steps=2, search_steps=(2, 6)) if steps < 50 else AdaSpaConfig()
    session = AD.apply(model, cfg)
    with torch.no_grad():
        eager = [call(t) for t in TIMESTEPS[:steps]]
        session.reset()
        counters.clear()
        model.compile_repeated_blocks(backend=backend, fullgraph=True)
        compiled = [call(t) for t in TIMESTEPS[:steps]]
    assert counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])
    assert not counters["graph_break"]
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-4)
    AD.remove(model)
    torch._dynamo.reset()

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


def check_density_one_matches(model, call, **apply_kwargs):
    """Every phase at density 1 (sparsity 0, one tier) equals the model's own attention; remove()
    restores the processors exactly."""
    cfg = AdaSpaConfig(sparsity=0.0, head_adaptive=False, num_steps=5, warmup_steps=1, search_steps=(1, 3))
    with torch.no_grad():
        refs = [call(t) for t in TIMESTEPS[:5]]
        originals = [b for b in model.modules() if hasattr(b, "processor")]
        procs = [a.processor for a in originals]
        session = AD.apply(model, cfg, **apply_kwargs)
        outs = [call(t) for t in TIMESTEPS[:5]]
        assert [p for *_, p in session.log[::len(session.log) // 5]] == \
            ["dense", "search_fused", "sparse", "search_cached", "sparse"]
        for r, o in zip(refs, outs):
            torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
        AD.remove(model)
        assert [a.processor for a in originals] == procs
        torch.testing.assert_close(call(TIMESTEPS[0]), refs[0], rtol=0, atol=0)
    return session


@pytest.mark.parametrize("family", list(tiny_models.FAMILIES))
def test_sparsity_zero_matches_own_processors(family):
    check_density_one_matches(*tiny_models.FAMILIES[family]())


def test_hunyuan15_image_tokens_count_as_text():
    """With non-zero image embeddings the image tokens are valid text (image-to-video)."""
    model, call = tiny_models.hunyuan15(image=True)
    session = check_density_one_matches(model, call)
    assert session.text_valid == (5 + 3 + 15,)


@pytest.mark.parametrize("family", list(tiny_models.GENERIC))
def test_generic_route_matches_own_processors(family):
    model, call = tiny_models.GENERIC[family]()
    session = check_density_one_matches(model, call, self_attention="attn1")
    assert len({key for _, _, key, _ in session.log}) == 2  # both blocks' attn1, no attn2


def test_generic_route_refusals():
    with pytest.raises(TypeError, match="supported families.*self_attention="):
        AD.apply(tiny_models.skyreels()[0])
    mochi = tiny_models.mochi()
    procs = [m.processor for m in mochi.modules() if hasattr(m, "processor")]
    with pytest.raises(TypeError, match="does not call 'dispatch_attention_fn'"):
        AD.apply(mochi, self_attention="attn1")
    assert [m.processor for m in mochi.modules() if hasattr(m, "processor")] == procs and not hasattr(mochi, "_adaspa")
    with pytest.raises(ValueError, match="known family whose self-attention is 'attn1'"):
        AD.apply(tiny_models.wan()[0], self_attention="attn2")
    model, call = tiny_models.ltx()  # attn2 is cross-attention: text joins it
    AD.apply(model, self_attention="attn2")
    with pytest.raises(ValueError, match="encoder_hidden_states"), torch.no_grad():
        call(TIMESTEPS[0])
    AD.remove(model)
    # a HunyuanVideo the integration does not recognise: its text refiner's attention is no dispatch call
    model, _ = tiny_models.hunyuan()
    model.__class__ = type("MyVideoTransformer", (type(model),), {})
    with pytest.raises(TypeError, match="supported families"):
        AD.apply(model, self_attention="attn")
    # tokens joined to the video before a video-only-looking attention: refused at the first call
    model = JoinsTokens()
    AD.apply(model, self_attention="attn1")
    with pytest.raises(ValueError, match="sequence has 263 tokens, the input 256 video tokens"), torch.no_grad():
        model(torch.randn(1, 4, 4, 16, 16), torch.tensor([999]))
    AD.remove(model)


class JoinsTokens(torch.nn.Module):
    """A transformer that puts 7 extra tokens beside the video before its self-attention."""

    def __init__(self):
        super().__init__()
        from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor
        self.config = types.SimpleNamespace(in_channels=4, patch_size=(1, 2, 2))
        self.blocks = torch.nn.ModuleList([torch.nn.Module()])
        self.blocks[0].attn1 = WanAttention(dim=128, heads=2, dim_head=64, processor=WanAttnProcessor())

    def forward(self, hidden_states, timestep):
        b, _, f, h, w = hidden_states.shape
        return self.blocks[0].attn1(torch.randn(b, f * (h // 2) * (w // 2) + 7, 128))


def test_steps_from_the_scheduler_with_bf16_timesteps():
    """HunyuanVideo 1.5's pipeline passes bf16 timesteps: with shift 9 four of 50 repeat, so
    counting steps by timestep fails; a pipeline's scheduler drives the steps instead."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    model, call = tiny_models.hunyuan15(dtype=torch.bfloat16)
    sched = FlowMatchEulerDiscreteScheduler(shift=9.0)
    pipe = types.SimpleNamespace(transformer=model, scheduler=sched)
    cfg = AdaSpaConfig()
    session = AD.apply(pipe, cfg)
    with torch.no_grad():
        for _ in range(2):  # a second generation restarts the schedule (set_timesteps)
            sched.set_timesteps(sigmas=list(np.linspace(1.0, 0.0, 51)[:-1]))
            ts = sched.timesteps
            assert len(set(ts.to(torch.bfloat16).tolist())) < 50
            sample = torch.zeros(1, 4, 4, 8, 8)
            for t in ts:
                out = call(float(t), 0) + 0 * call(float(t), 1)
                sched.step(out.float(), t, sample)
    want = [(s, br, (0, layer), expected_phase(cfg, s)) for s in range(50) for br in (0, 1) for layer in range(2)]
    assert session.log == want
    AD.remove(pipe)
    assert "step" not in sched.__dict__ and "set_timesteps" not in sched.__dict__


def test_manual_steps():
    model, call = tiny_models.wan()
    cfg = AdaSpaConfig()
    session = AD.apply(model, cfg, steps="manual")
    with torch.no_grad():
        for step in (0, 10, 11, 30, 31):
            session.set_step(step, 1)
            call(TIMESTEPS[0])  # the same timestep every time: manual steps ignore it
    assert [(s, br, p) for s, br, _, p in session.log[::2]] == \
        [(0, 1, "dense"), (10, 1, "search_fused"), (11, 1, "sparse"), (30, 1, "search_cached"), (31, 1, "sparse")]
    AD.remove(model)
    with pytest.raises(ValueError, match="steps must be"):
        AD.apply(model, cfg, steps="every")
    with pytest.raises(ValueError, match="needs a pipeline with a scheduler"):
        AD.apply(model, cfg, steps="scheduler")


@pytest.mark.parametrize("family", ["wan", "wan2.2-ti2v"])
def test_phase_log_50_steps_separate_cfg_branches(family):
    """Cond and uncond as separate forwards; Wan 2.2 TI2V passes one timestep per token with the
    first frame's at 0 (image-to-video): the step is the largest."""
    model, call = tiny_models.FAMILIES[family]()
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


@pytest.mark.parametrize("family", ["cogvideox", "hunyuan", "hunyuan1.5"])
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


@pytest.mark.parametrize("budget, cached", [(0.05, True), (0.0, False)])
def test_lse_cache_budget_from_the_model(budget, cached):
    """apply() gives the session the transformer's weight bytes and layer count; with the default
    cache_lse=None the LSE is kept when all layers' LSE fits lse_budget of the weights (the tiny
    model's does at 5 %), else the second search is a fused one and no LSE is cached."""
    model, call = tiny_models.FAMILIES["cogvideox"]()
    cfg = AdaSpaConfig(num_steps=6, warmup_steps=1, search_steps=(1, 4), lse_budget=budget)
    session = AD.apply(model, cfg)
    assert session.weight_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    assert session.layer_count == len(AD._attention_modules(model, AD.FAMILIES[type(model).__name__])) == 2
    with torch.no_grad():
        for t in TIMESTEPS[:6]:
            call(t)
    phases = [p for s, _, _, p in session.log if s == 4]
    assert phases == ["search_cached" if cached else "search_fused"] * 2
    assert all((st.lse is not None) == cached for states in session._layers.values() for st in states)
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
    with cond and uncond as separate forwards (dense, fused search, sparse, cached search: not per
    CFG branch), and the same outputs as eager."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    model, call = tiny_models.wan(num_layers=3)
    steps = 50 if backend == "aot_eager" else 12
    cfg = AdaSpaConfig(sparsity=0.5, num_steps=steps, warmup_steps=2, search_steps=(2, 6)) if steps < 50 else AdaSpaConfig()
    session = AD.apply(model, cfg)
    with torch.no_grad():
        eager = [call(t, b) for t in TIMESTEPS[:steps] for b in (0, 1)]
        session.reset()
        counters.clear()
        model.compile_repeated_blocks(backend=backend, fullgraph=True)
        compiled = [call(t, b) for t in TIMESTEPS[:steps] for b in (0, 1)]
    assert counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])
    assert not counters["graph_break"]
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-4)
    AD.remove(model)
    torch._dynamo.reset()

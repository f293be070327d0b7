"""The AdaSpa runtime: config, schedule phases, tiers, text handling, cache format and size."""
import math

import pytest
import torch
import torch.nn.functional as F

from adaspa_ext import reference as R
from adaspa_ext.config import AdaSpaConfig
from adaspa_ext.presets import PRESETS
from adaspa_ext.runtime import (AdaSpaSession, LayerState, TextSpec, _select, adaspa_attention, estimate_cache_bytes,
                                forced_key_blocks, kept_share, pack_block_mask, unpack_block_mask)
from adaspa_ext.workload import VideoAttentionWorkload
from util import (assert_within_torch_error, floor_for, make_qkv, random_idx, token_mask_from_idx,
                  torch_same_precision_attention)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(sparsity=0.3), "sparsity must lie in \\(1/3, 1\\)"),
    (dict(sparsity=1.0), "sparsity must lie in"),
    (dict(sparsity=1.0, head_adaptive=False), "sparsity must lie in \\[0, 1\\)"),
    (dict(block_size=32), "block_size must be one of"),
    (dict(search_steps=(5, 30)), "start before the end of warm-up"),
    (dict(search_steps=(30, 10)), "strictly increasing"),
    (dict(search_steps=(10, 50)), "must be < num_steps"),
    (dict(search_steps=()), "at least one step"),
    (dict(warmup_steps=50), "warmup_steps must lie in"),
    (dict(recall_threshold=0.0), "recall_threshold must lie in"),
    (dict(num_steps=0), "num_steps must be >= 1"),
])
def test_invalid_configs_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AdaSpaConfig(**kwargs)


def test_default_schedule_phases():
    cfg = AdaSpaConfig()
    phases = [cfg.schedule_phase(t) for t in range(50)]
    assert phases[:10] == ["dense"] * 10
    assert phases[10] == phases[30] == "search"
    assert phases[11:30] == ["sparse"] * 19 and phases[31:] == ["sparse"] * 19
    hi, base, lo = cfg.tier_sparsities()
    assert (hi, base, lo) == pytest.approx((0.9, 0.8, 0.7)) and (hi + lo) / 2 == pytest.approx(base)


def test_session_step_and_branch_tracking():
    s = AdaSpaSession(AdaSpaConfig())
    seen = []
    for t in [999, 999, 950, 950, 900]:
        s.begin_forward(t)
        seen.append((s.step, s.branch))
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    st = s.state("layer")
    st.lse = torch.zeros(1)
    s.begin_forward(999)  # timestep went up: a new generation
    assert (s.step, s.branch) == (0, 0) and s.state("layer").lse is None


def test_pack_unpack_roundtrip():
    idx = random_idx(2, 3, 5, 70, 20, density=0.2)
    packed = pack_block_mask(idx, 70)
    assert packed.dtype == torch.uint8 and packed.shape == (2, 3, 5, 9)
    assert torch.equal(unpack_block_mask(packed, 70, 20), idx)


def test_forced_key_blocks():
    assert forced_key_blocks(5, 0, 70, 64, "cpu").tolist() == [True, True, False, False, False]
    assert forced_key_blocks(5, 250, 300, 64, "cpu").tolist() == [False, False, False, True, True]


def test_head_adaptive_tiers():
    # 4 heads with clearly ordered recall at the base keep: heads 0, 1 concentrated, 2, 3 spread.
    b, h, mq, mk = 1, 4, 6, 20
    scores = torch.rand(b, h, mq, mk) * 0.01
    scores[:, 0, :, :2] = 10.0
    scores[:, 1, :, :3] = 10.0
    cfg = AdaSpaConfig(sparsity=0.8, recall_threshold=0.8)
    st = LayerState()
    idx = _select(cfg, scores, None, mk, st)
    k_hi, k0, k_lo = (round((1 - s) * mk) for s in cfg.tier_sparsities())
    # 2 heads above tau, capped at H // 2 = 2: heads 0, 1 sparser; the two lowest-recall denser
    assert st.keep.tolist() == [k_hi, k_hi, k_lo, k_lo]
    assert ((idx >= 0).sum(-1)[0, :, 0]).tolist() == [k_hi, k_hi, k_lo, k_lo]
    # no head above tau: everybody at the base keep
    st2 = LayerState()
    _select(cfg, torch.ones(b, h, mq, mk), None, mk, st2)
    assert st2.keep.tolist() == [k0] * h


def run_layer_schedule(preset, cfg, steps, text=True, layers=1):
    wl = VideoAttentionWorkload(preset)
    session = AdaSpaSession(cfg)
    ts = TextSpec(preset.text_tokens, preset.text_first) if text else TextSpec()
    outs = []
    for step in range(steps):
        session.set_step(step)
        for layer in range(layers):
            q, k, v = wl.qkv(layer, step, cfg.num_steps)
            outs.append((q, k, v, adaspa_attention(q, k, v, session.state(layer), session, ts, layer)))
    return session, outs


def test_phase_log_over_50_steps():
    cfg = AdaSpaConfig()
    session, outs = run_layer_schedule(PRESETS["tiny"], cfg, 50, layers=2)
    want = {s: ("dense" if s < 10 else "search_fused" if s == 10 else "search_cached" if s == 30 else "sparse")
            for s in range(50)}
    assert [(s, l, p) for s, _, l, p in session.log] == [(s, l, want[s]) for s in range(50) for l in range(2)]
    assert all(torch.isfinite(o).all() for *_, o in outs)
    for layer in range(2):  # the share counted from the cached bits is the search's recorded density
        st = session.state(layer)
        assert 0 < st.density < 1 and kept_share(st, cfg.block_size) == pytest.approx(st.density, abs=1e-12)
    assert kept_share(LayerState(), cfg.block_size) is None


def test_without_the_lse_cache_every_search_is_fused():
    """cache_lse=False: no LSE is kept, so the second search step runs the fused search (the phase
    log says so) and the cache is smaller by exactly the LSE; a new resolution still drops the
    cached pattern (it is keyed by shapes, not by the LSE)."""
    cfg = AdaSpaConfig(cache_lse=False)
    session, outs = run_layer_schedule(PRESETS["tiny"], cfg, 50, layers=2)
    want = {s: ("dense" if s < 10 else "search_fused" if s in (10, 30) else "sparse") for s in range(50)}
    assert [(s, l, p) for s, _, l, p in session.log] == [(s, l, want[s]) for s in range(50) for l in range(2)]
    assert all(torch.isfinite(o).all() for *_, o in outs)
    st = session.state(0)
    assert st.lse is None and st.mask is not None
    p = PRESETS["tiny"]
    lse_bytes = p.batch * p.heads * (p.tokens - p.text_tokens) * 4 * p.layers
    assert estimate_cache_bytes(p, AdaSpaConfig()) - estimate_cache_bytes(p, cfg) == lse_bytes
    q = torch.randn(p.batch, p.heads, p.tokens + 64, p.head_dim)
    session.set_step(40)
    adaspa_attention(q, q, q, st, session, TextSpec(p.text_tokens, p.text_first), 0)
    assert session.log[-1][-1] == "search_fused"  # the old pattern was dropped, a new search ran


def test_auto_lse_cache_follows_the_budget():
    """cache_lse=None keeps the LSE when every layer's LSE together fits lse_budget of the weight
    bytes (both set by apply; unknown: kept); True / False are followed whatever the budget."""
    s = AdaSpaSession(AdaSpaConfig())
    assert s.keeps_lse(10**12)  # no model known
    s.weight_bytes, s.layer_count = 1000, 10
    assert s.keeps_lse(5) and not s.keeps_lse(6)  # 50 <= 0.05 * 1000 < 60
    s.config = AdaSpaConfig(lse_budget=0.0)
    assert not s.keeps_lse(1)
    s.config = AdaSpaConfig(cache_lse=True, lse_budget=0.0)
    assert s.keeps_lse(10**12)
    s.config = AdaSpaConfig(cache_lse=False)
    assert not s.keeps_lse(0)
    with pytest.raises(ValueError, match="lse_budget"):
        AdaSpaConfig(lse_budget=-0.1)


def test_sparsity_zero_equals_dense():
    cfg = AdaSpaConfig(sparsity=0.0, head_adaptive=False, num_steps=6, warmup_steps=1, search_steps=(1, 4))
    _, outs = run_layer_schedule(PRESETS["tiny"], cfg, 6)
    for q, k, v, o in outs:
        torch.testing.assert_close(o, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("first", [False, True])
def test_text_rows_dense_and_padded_text_keys_never_attended(first):
    b, h, nv, nt, d, valid = 2, 2, 300, 40, 64, (25, 25)
    q, k, v = (torch.randn(b, h, nv + nt, d) for _ in range(3))
    txt = slice(0, nt) if first else slice(nv, nv + nt)
    pad = slice(valid[0], nt) if first else slice(nv + valid[0], nv + nt)
    k[:, :, pad] = 50.0  # would dominate every row if it were attended
    v[:, :, pad] = 1e4
    cfg = AdaSpaConfig(sparsity=0.0, head_adaptive=False, num_steps=4, warmup_steps=0, search_steps=(0,))
    session = AdaSpaSession(cfg)
    keep = torch.ones(nv + nt, dtype=torch.bool)
    keep[pad] = False
    dense = F.scaled_dot_product_attention(q, k[:, :, keep], v[:, :, keep])
    st = LayerState()
    for step in range(3):  # fused search, then sparse
        session.set_step(step)
        o = adaspa_attention(q, k, v, st, session, TextSpec(nt, first, valid))
        torch.testing.assert_close(o, dense, rtol=1e-5, atol=1e-5)
    # text query rows equal dense attention over the valid keys also at high sparsity
    session2 = AdaSpaSession(AdaSpaConfig(sparsity=0.9, num_steps=4, warmup_steps=0, search_steps=(0,)))
    st2 = LayerState()
    for step in range(2):
        session2.set_step(step)
        o = adaspa_attention(q, k, v, st2, session2, TextSpec(nt, first, valid))
        torch.testing.assert_close(o[:, :, txt], dense[:, :, txt], rtol=1e-5, atol=1e-5)
        assert torch.isfinite(o).all() and o.abs().max() < 100  # padded values (1e4) never leak in


@pytest.mark.parametrize("first,nv,nt,valid", [(False, 256, 37, None), (False, 256, 37, 30), (False, 128, 64, 64),
                                                (True, 301, 64, 50), (True, 250, 128, None)])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_text_rows_in_the_video_call_match_reference(first, nv, nt, valid, layout):
    """Text query rows that start on a block boundary share the video rows' sparse_attn call on
    the CPU, with full key lists. Over fused search, sparse, cached search and sparse steps every
    output row matches float64 attention: text rows dense over the valid keys, video rows dense at
    the fused search and over the current pattern's blocks after it; the cached kernel idx is that
    pattern plus full lists for the text query blocks."""
    b, h, d, bs = 2, 2, 64, 64
    n = nv + nt
    q, k, v = make_qkv(b, h, n, n, d, torch.float32, "cpu", layout=layout)
    txt = torch.arange(n) < nt if first else torch.arange(n) >= nv
    t_valid = nt if valid is None else valid
    keys = ~txt | ((torch.arange(n) < t_valid) if first else (torch.arange(n) < nv + t_valid))
    k_use, v_use = k[:, :, keys], v[:, :, keys]
    nk, mk = int(keys.sum()), math.ceil(int(keys.sum()) / bs)
    session = AdaSpaSession(AdaSpaConfig(sparsity=0.8, num_steps=4, warmup_steps=0, search_steps=(0, 2)))
    st = LayerState()
    for step in range(4):
        session.set_step(step)
        o = adaspa_attention(q, k, v, st, session, TextSpec(nt, first, None if valid is None else (valid,) * b))
        assert o.stride() == q.stride()
        idx = unpack_block_mask(st.mask, mk, st.width)
        allowed = torch.ones(b, h, n, nk, dtype=torch.bool)
        if step > 0:
            allowed[:, :, ~txt] = token_mask_from_idx(idx, nv, nk, bs)
        ref = torch_same_precision_attention(q.double(), k_use.double(), v_use.double(), allowed, d ** -0.5)
        yard = torch_same_precision_attention(q, k_use, v_use, allowed, d ** -0.5)
        assert_within_torch_error(o, ref, yard, floor_for(torch.float32), f"step {step}")
        text_qblocks = math.ceil(n / bs) - math.ceil(nv / bs)
        want = idx.new_full((b, h, math.ceil(n / bs), mk), -1)
        video_qblocks = slice(text_qblocks, None) if first else slice(0, math.ceil(nv / bs))
        want[:, :, video_qblocks, :idx.shape[-1]] = idx
        want[:, :, slice(0, text_qblocks) if first else slice(math.ceil(nv / bs), None)] = torch.arange(mk, dtype=torch.int32)
        assert torch.equal(st.idx, want), step
        assert st.nbytes() >= st.idx.numel() * 4 + st.mask.numel()


def test_text_blocks_are_forced_into_every_row():
    p = PRESETS["tiny"]
    cfg = AdaSpaConfig(sparsity=0.9, num_steps=4, warmup_steps=0, search_steps=(0,))
    session, _ = run_layer_schedule(p, cfg, 1)
    st = session.state(0)
    mk = math.ceil(p.tokens / 64)
    idx = unpack_block_mask(st.mask, mk, st.width)
    forced = forced_key_blocks(mk, p.video_tokens, p.tokens, 64, "cpu")
    assert R.block_mask_from_idx(idx, mk)[..., forced].all()


def test_batch_with_different_text_padding_per_element():
    b, h, nv, nt, d = 2, 2, 200, 30, 64
    q, k, v = (torch.randn(b, h, nv + nt, d) for _ in range(3))
    cfg = AdaSpaConfig(sparsity=0.0, head_adaptive=False, num_steps=4, warmup_steps=0, search_steps=(0,))
    session = AdaSpaSession(cfg)
    st = LayerState()
    o = adaspa_attention(q, k, v, st, session, TextSpec(nt, False, (30, 12)))
    for i, n_ok in enumerate((30, 12)):
        ref = F.scaled_dot_product_attention(q[i:i + 1], k[i:i + 1, :, :nv + n_ok], v[i:i + 1, :, :nv + n_ok])
        torch.testing.assert_close(o[i:i + 1], ref, rtol=1e-5, atol=1e-5)
    assert set(st.sub) == {0, 1}


def test_hunyuan_cache_fits_3gb():
    nbytes = estimate_cache_bytes(PRESETS["hunyuan-720p"])
    assert 0 < nbytes <= 3e9, nbytes


@pytest.mark.parametrize("text_tokens", [0, 40])
@pytest.mark.parametrize("sparsity", [0.8, 0.95])
def test_tiny_pattern_keeps_a_video_block_per_row(text_tokens, sparsity):
    """Two video key blocks: round((1 - tier) * 2) is 0 for every tier at s = 0.8 / 0.95; each head
    must still keep one non-forced block in every row (else its video rows output 0)."""
    b, h, nv, d = 1, 4, 128, 64
    q, k, v = (torch.randn(b, h, nv + text_tokens, d) for _ in range(3))
    cfg = AdaSpaConfig(sparsity=sparsity, num_steps=4, warmup_steps=0, search_steps=(0, 2))
    session = AdaSpaSession(cfg)
    st = LayerState()
    mk = math.ceil((nv + text_tokens) / 64)
    forced = forced_key_blocks(mk, nv, nv + text_tokens, 64, "cpu")
    for step in range(4):  # fused search, sparse, cached search, sparse
        session.set_step(step)
        o = adaspa_attention(q, k, v, st, session, TextSpec(text_tokens))
        mask = R.block_mask_from_idx(unpack_block_mask(st.mask, mk, st.width), mk)  # [B, H, Mq, Mk]
        assert (mask[..., ~forced].sum(-1) >= 1).all(), (step, st.keep)
        assert (st.keep >= 1).all()
        assert (o[:, :, :nv].abs().sum(-1) > 0).all(), step  # no video row left with output 0


@pytest.mark.parametrize("first,nv,nt,valid", [(False, 300, 37, None), (True, 250, 90, (70, 70)),
                                                (False, 256, 64, None), (False, 200, 30, (30, 12)), (False, 333, 0, None)])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_sparse_step_from_the_packed_pattern_and_one_output(first, nv, nt, valid, layout):
    """The GPU's sparse step (no cached idx: mask_to_idx from the packed pattern) gives exactly the
    CPU's (cached idx); text rows outside the video call, per-batch states and the video rows
    all land in one output laid out like q."""
    b, h, d = 2, 2, 64
    q, k, v = make_qkv(b, h, nv + nt, nv + nt, d, torch.float32, "cpu", layout=layout)
    session = AdaSpaSession(AdaSpaConfig(sparsity=0.8, num_steps=4, warmup_steps=0, search_steps=(0,)))
    st = LayerState()
    text = TextSpec(nt, first, valid)
    for step in range(3):  # fused search, then sparse steps
        session.set_step(step)
        o = adaspa_attention(q, k, v, st, session, text)
        assert o.stride() == q.stride() and torch.isfinite(o).all()
        if step == 0:
            continue
        states = list(st.sub.values()) or [st]
        cached = [s.idx for s in states]
        assert all(i is not None for i in cached)
        for s in states:
            s.idx = None
        lean = adaspa_attention(q, k, v, st, session, text)
        for s, i in zip(states, cached):
            s.idx = i
        assert torch.equal(lean, o) and lean.stride() == q.stride()
    assert {p for *_, p in session.log} == {"search_fused", "sparse"}


def test_inputs_requiring_grad_keep_the_forward_only_error():
    """Text rows outside the video call: the video rows go through sparse_attn (not the out
    variant, which has no autograd), so a gradient still reaches the forward-only error."""
    q, k, v = (t.requires_grad_() for t in make_qkv(1, 2, 337, 337, 64, torch.float32, "cpu"))
    session = AdaSpaSession(AdaSpaConfig(sparsity=0.8, num_steps=4, warmup_steps=0, search_steps=(0,)))
    st = LayerState()
    for step in range(2):
        session.set_step(step)
        o = adaspa_attention(q, k, v, st, session, TextSpec(37))
    assert o.requires_grad
    with pytest.raises(NotImplementedError, match="adaspa.sparse_attn has no backward"):
        o[:, :, :300].sum().backward()

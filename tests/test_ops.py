"""Correctness of the four ops against the float64 references, on the CPU and (marked gpu) CUDA."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

import adaspa_ext as A
from adaspa_ext import reference as R
from conftest import DEVICES, DTYPE_OF, op_params, require_kernels, use_path
from util import (assert_topk_by_threshold, assert_within_torch_error, check_lse, floor_for, make_qkv, poison,
                  random_idx, token_mask_from_idx, torch_same_precision_attention)


def run_sparse_and_check(q, k, v, idx, bs, what, scale=None):
    b, h, nq, d = q.shape
    poison(((b, h, nq, d), q.dtype), ((b, h, nq), torch.float32), device=q.device)
    out, lse = A.sparse_attn(q, k, v, idx, bs, scale)
    assert out.shape == q.shape and out.dtype == q.dtype and out.stride() == torch.empty_like(q).stride()
    assert lse.shape == (b, h, nq) and lse.dtype == torch.float32
    ref_out, ref_lse = R.sparse_attn_ref(q, k, v, idx, bs, scale)
    sc = d ** -0.5 if scale is None else scale
    yard = torch_same_precision_attention(q, k, v, token_mask_from_idx(idx, nq, k.shape[2], bs), sc)
    assert_within_torch_error(out, ref_out, yard, floor_for(q.dtype), what)
    check_lse(lse, ref_lse, what)
    return out, lse


@pytest.mark.parametrize("device,path,dtype,d,bs",
                         op_params("sparse_attn", [torch.bfloat16, torch.float16], [64, 128], [64, 128]))
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_sparse_attn_matches_reference(device, path, dtype, d, bs, density, monkeypatch):
    use_path(monkeypatch, path)
    nq, nk = 1000, 1023
    q, k, v = make_qkv(2, 2, nq, nk, d, dtype, device)
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    kmax = max(1, round(density * mk))
    idx = random_idx(2, 2, mq, mk, kmax + 2, density=density, device=device)
    run_sparse_and_check(q, k, v, idx, bs, f"sparse_attn {dtype} d={d} bs={bs} density={density}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nq,nk", [(1, 1), (63, 65), (65, 63), (113, 4097), (4097, 113), (1000, 1000)])
def test_sparse_attn_odd_lengths(device, nq, nk):
    require_kernels(device, "sparse_attn", torch.bfloat16, 128, 64)
    q, k, v = make_qkv(1, 2, nq, nk, 128, torch.bfloat16, device, layout="bnhd")
    bs = 64
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    idx = random_idx(1, 2, mq, mk, mk, density=0.5, device=device)
    out, _ = run_sparse_and_check(q, k, v, idx, bs, f"sparse_attn nq={nq} nk={nk}")
    # outputs follow q's memory layout: a [B, N, H, D] view comes back as one
    assert out.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize("device", DEVICES)
def test_float32_on_cpu_only(device):
    if device != "cpu":
        q, k, v = make_qkv(1, 1, 64, 64, 64, torch.float32, device)
        with pytest.raises(TypeError, match="'q' must be float16 or bfloat16"):
            A.sparse_attn(q, k, v, torch.zeros(1, 1, 1, 1, dtype=torch.int32, device=device))
        return
    q, k, v = make_qkv(1, 2, 200, 130, 64, torch.float32, device)
    idx = random_idx(1, 2, 4, 3, 3, density=0.6)
    run_sparse_and_check(q, k, v, idx, 64, "sparse_attn float32")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bs", [64, 128])
def test_density_one_equals_dense(device, bs):
    require_kernels(device, "sparse_attn", torch.float16, 64, bs)
    nq = nk = 777
    q, k, v = make_qkv(1, 3, nq, nk, 64, torch.float16, device)
    mk = math.ceil(nk / bs)
    idx = torch.arange(mk, dtype=torch.int32, device=device).expand(1, 3, math.ceil(nq / bs), mk).contiguous()
    out, lse = A.sparse_attn(q, k, v, idx, bs)
    dense = F.scaled_dot_product_attention(q, k, v)
    ref_out, ref_lse = R.dense_attn_ref(q, k, v)
    assert_within_torch_error(out, ref_out, dense, floor_for(q.dtype), "density 1 vs dense")
    check_lse(lse, ref_lse, "density 1 lse")


@pytest.mark.parametrize("device", DEVICES)
def test_empty_rows_give_zero_and_minus_inf(device):
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    q, k, v = make_qkv(1, 2, 130, 200, 64, torch.bfloat16, device)
    idx = random_idx(1, 2, 3, 4, 4, density=0.5, device=device)
    idx[0, 1, 1] = -1  # one query block visits nothing
    out, lse = run_sparse_and_check(q, k, v, idx, 64, "empty row")
    assert (out[0, 1, 64:128] == 0).all() and torch.isneginf(lse[0, 1, 64:128]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_bad_index_entries_are_padding_and_check_mode_raises(device):
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    q, k, v = make_qkv(1, 1, 128, 300, 64, torch.bfloat16, device)
    mk = 5
    idx = torch.tensor([[[[0, 3, -5, 2, 3, 99, 4, -1],       # unsorted / duplicate / out of range
                          [7, -1, 1, 2, -3, 5, 2**31 - 1, 0]]]], dtype=torch.int32, device=device)
    run_sparse_and_check(q, k, v, idx, 64, "junk idx")
    acc = R.accepted_entries(idx.cpu(), mk)
    assert acc.tolist() == [[[[True, True, False, False, False, False, True, False],
                              [False, False, True, True, False, False, False, False]]]]
    with pytest.raises(ValueError, match="outside"):
        A.sparse_attn(q, k, v, idx, 64, check=True)
    with pytest.raises(ValueError, match="not strictly ascending"):
        A.sparse_attn(q, k, v, torch.tensor([[[[1, 0], [2, 2]]]], dtype=torch.int32, device=device), 64, check=True)
    with pytest.raises(ValueError, match="padding must come last"):
        A.sparse_attn(q, k, v, torch.tensor([[[[-1, 0], [1, 2]]]], dtype=torch.int32, device=device), 64, check=True)
    good = torch.tensor([[[[0, 4, -1], [1, 2, 3]]]], dtype=torch.int32, device=device)
    A.sparse_attn(q, k, v, good, 64, check=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bs", [64, 128])
@pytest.mark.parametrize("density", [0.5, 1.0])
def test_sparse_attn_growing_logits(device, bs, density):
    require_kernels(device, "attn_search" if density == 1.0 else "sparse_attn", torch.bfloat16, 128, bs)
    """Keys scaled up along the sequence: each row's running max grows many times by more than
    the kernels' conditional-rescale threshold (8 in log2 units) and stays stale in between, the
    two paths of the online softmax that random N(0, 1) logits never leave the first tile for."""
    nq, nk, d = 300, 1500, 128
    q, k, v = make_qkv(1, 2, nq, nk, d, torch.bfloat16, device)
    ramp = torch.linspace(0.5, 12.0, nk, device=device).view(1, 1, nk, 1)
    k = (k.float() * ramp).to(torch.bfloat16)
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    idx = random_idx(1, 2, mq, mk, mk, density=density, device=device)
    run_sparse_and_check(q, k, v, idx, bs, f"sparse_attn growing logits bs={bs} density={density}")
    if density == 1.0:  # the dense flash pass of attn_search
        out, lse, _ = A.attn_search(q, k, v, bs)
        ref_out, ref_lse = R.dense_attn_ref(q, k, v)
        assert_within_torch_error(out, ref_out, F.scaled_dot_product_attention(q, k, v), floor_for(q.dtype),
                                  "search out, growing logits")
        check_lse(lse, ref_lse, "search lse, growing logits")


def _hopper_bf16_tuples(op):
    from adaspa_ext import ops
    return [pytest.param(DTYPE_OF[dt], d, bs, marks=pytest.mark.gpu, id=f"{dt}-d{d}-bs{bs}")
            for path, dt, d, bs in ops.compiled_tuples(op) if path == "hopper" and dt == "bf16"]


def _cuda_kernel_names(fn):
    """Names of the CUDA kernels fn launched, as the profiler reports them."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.key for e in prof.key_averages()]


def _plan_kernels_ran(fn):
    """Whether fn launched the tile-order planning kernels (tile_order.h), by the profiler's names."""
    return any("tile_bins_kernel" in name for name in _cuda_kernel_names(fn))


@pytest.mark.parametrize("dt,d,bs", _hopper_bf16_tuples("sparse_attn"))
def test_tile_order_changes_nothing_but_the_order(dt, d, bs, monkeypatch):
    """The hopper sparse kernel taking its tiles longest row first (ADASPA_TILE_ORDER) computes
    bit-for-bit what it computes in launch order, on rows of very different lengths (tiers per
    head, full rows, empty rows, -1 / duplicate / out-of-range entries), B > 1 and Nq != Nk; the
    planning kernels run exactly when asked for (auto: a grid of >= 4 CTAs per SM; unset: never)."""
    use_path(monkeypatch, "hopper")
    g = torch.Generator().manual_seed(7)
    b, h, nq, nk = 2, 3, 1000 + bs // 2, 1301
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    q, k, v = make_qkv(b, h, nq, nk, d, dt, "cuda")
    idx = torch.full((b, h, mq, mk + 3), -1, dtype=torch.int32)
    for hh in range(h):  # per-head lengths 1x / 2x / 3x, a full row per head, an empty one
        base = random_idx(b, 1, mq, mk, mk, density=0.15 * (hh + 1), generator=g)
        idx[:, hh:hh + 1, :, :mk] = base
    idx[:, :, 2, :mk] = torch.arange(mk, dtype=torch.int32)
    idx[:, :, 4] = -1
    idx[0, 1, 5, :4] = torch.tensor([3, 3, mk + 5, 1], dtype=torch.int32)  # duplicate, out of range, descending
    idx = idx.cuda()
    outs = {}
    for mode in ("never", "always"):
        monkeypatch.setenv("ADASPA_TILE_ORDER", mode)
        out = torch.full_like(q, float("nan"))
        assert _plan_kernels_ran(lambda: A.sparse_attn_out(q, k, v, idx, out, bs)) == (mode == "always")
        outs[mode] = out
    assert torch.equal(outs["always"], outs["never"])
    monkeypatch.delenv("ADASPA_TILE_ORDER")  # the default: launch order
    assert not _plan_kernels_ran(lambda: A.sparse_attn_out(q, k, v, idx, out, bs))
    want, _ = R.sparse_attn_ref(q, k, v, idx, bs)
    yard = torch_same_precision_attention(q, k, v, token_mask_from_idx(idx, nq, nk, bs), d ** -0.5)
    assert_within_torch_error(outs["always"], want, yard, floor_for(dt), f"tile order d={d} bs={bs}")
    # auto: planned for a grid of >= 4 CTAs per SM, not below
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    monkeypatch.setenv("ADASPA_TILE_ORDER", "auto")
    for rows_per_sm, planned in ((1, False), (4, True)):
        mq2 = math.ceil(rows_per_sm * sms / (b * h))
        q2, k2, v2 = make_qkv(b, h, mq2 * bs, mk * bs, d, dt, "cuda")
        idx2 = random_idx(b, h, mq2, mk, 6, density=None, device="cuda", generator=g)
        out2 = torch.empty_like(q2)
        assert _plan_kernels_ran(lambda: A.sparse_attn_out(q2, k2, v2, idx2, out2, bs)) == planned, rows_per_sm
        monkeypatch.setenv("ADASPA_TILE_ORDER", "never")
        ref2 = torch.empty_like(q2)
        A.sparse_attn_out(q2, k2, v2, idx2, ref2, bs)
        monkeypatch.setenv("ADASPA_TILE_ORDER", "auto")
        assert torch.equal(out2, ref2)
    monkeypatch.setenv("ADASPA_TILE_ORDER", "sometimes")
    with pytest.raises(ValueError, match="ADASPA_TILE_ORDER must be never, auto or always"):
        A.sparse_attn(q, k, v, idx, bs)


@pytest.mark.parametrize("device,path,dtype,d,bs",
                         op_params("attn_search", [torch.bfloat16, torch.float16], [64, 128], [64, 128]))
def test_attn_search(device, path, dtype, d, bs, monkeypatch):
    use_path(monkeypatch, path)
    nq, nk = 333, 1000
    q, k, v = make_qkv(2, 2, nq, nk, d, dtype, device, layout="bnhd")
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    poison(((2, 2, nq, d), dtype), ((2, 2, nq), torch.float32), ((2, 2, mq, mk), torch.float32), device=device)
    out, lse, scores = A.attn_search(q, k, v, bs)
    ref_out, ref_lse, ref_scores = R.attn_search_ref(q, k, v, bs)
    assert scores.shape == (2, 2, mq, mk) and scores.dtype == torch.float32
    assert_within_torch_error(out, ref_out, F.scaled_dot_product_attention(q, k, v), floor_for(dtype), "search out")
    check_lse(lse, ref_lse, "search lse")
    rows = torch.tensor([min(bs, nq - i * bs) for i in range(mq)], dtype=torch.float64, device=device)
    torch.testing.assert_close(scores.double().sum(-1), rows.expand(2, 2, mq), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(scores.double(), ref_scores, rtol=2e-3, atol=1e-4 * bs)


@pytest.mark.parametrize("device,path,dtype,d,bs", op_params("block_scores", [torch.bfloat16], [64, 128], [64, 128]))
def test_block_scores_with_stale_lse(device, path, dtype, d, bs, monkeypatch):
    use_path(monkeypatch, path)
    nq, nk = 300, 777
    q, k, _ = make_qkv(1, 3, nq, nk, d, dtype, device)
    _, lse = R.dense_attn_ref(q, k, k)
    stale = (lse + 0.3 * torch.randn_like(lse)).float()
    poison(((1, 3, math.ceil(nq / bs), math.ceil(nk / bs)), torch.float32), device=device)
    got = A.block_scores(q, k, stale, bs)
    ref = R.block_scores_ref(q, k, stale, bs)
    torch.testing.assert_close(got.double(), ref, rtol=3e-3, atol=1e-4 * bs)


def _score_kernel_shapes(fn):
    """(CTAs per SM, warpgroups per CTA) of each hopper score kernel fn launched, by the profiler's
    kernel names (ScoreTraits' template arguments)."""
    shapes = set()
    for name in _cuda_kernel_names(fn):
        m = re.search(r"score_sm90_kernel<.*?ScoreTraits<([^<>]*)>", name)
        if m:  # <element, head dim, block size, diag, CTAs per SM, warpgroups, ...>
            args = [a.strip() for a in m.group(1).split(",")]
            shapes.add((int(args[4]), int(args[5])))
    return shapes


@pytest.mark.parametrize("dt,d,bs", _hopper_bf16_tuples("block_scores"))
def test_block_scores_cta_shapes_agree(dt, d, bs, monkeypatch):
    """The hopper block_scores runs CTAs of four warpgroups (256 query rows, one per SM) when the grid
    has at least one per SM, else two CTAs of two warpgroups per SM (score_kernel_sm90.h,
    run_block_scores). Both match the float64 reference on odd lengths, and each other bit for bit
    (one head at a time is a grid below the SM count)."""
    use_path(monkeypatch, "hopper")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    b, nq, nk = 2, 777, 1301  # four 256-row tiles per head, the last one of 9 rows
    h = math.ceil(sms / (b * math.ceil(nq / 256)))
    q, k, _ = make_qkv(b, h, nq, nk, d, dt, "cuda")
    _, lse = R.dense_attn_ref(q, k, k)
    lse = (lse + 0.3 * torch.randn_like(lse)).float()
    poison(((b, h, math.ceil(nq / bs), math.ceil(nk / bs)), torch.float32), device="cuda")
    got = {}
    assert _score_kernel_shapes(lambda: got.update(all=A.block_scores(q, k, lse, bs))) == {(1, 4)}
    torch.testing.assert_close(got["all"].double(), R.block_scores_ref(q, k, lse, bs), rtol=3e-3, atol=1e-4 * bs)
    for i in range(h):
        assert _score_kernel_shapes(lambda: got.update(one=A.block_scores(q[:, i:i + 1], k[:, i:i + 1],
                                                                          lse[:, i:i + 1], bs))) == {(2, 2)}
        assert torch.equal(got["one"], got["all"][:, i:i + 1]), i


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mk", [1, 7, 40, 333])
def test_select_blocks(device, mk):
    b, h, mq = 2, 3, 5
    scores = torch.rand(b, h, mq, mk, device=device)
    scores[0, 0, 0] = 0.5  # a row of ties
    scores[1, 2, :, : mk // 2] = scores[1, 2, :, :1]  # many ties
    keep = torch.tensor([0, max(1, mk // 3), mk], dtype=torch.int32)
    forced = torch.zeros(mk, dtype=torch.bool)
    forced[-1] = True
    for f in (None, forced):
        poison(((b, h, mq, mk), torch.int32), ((b, h, mq), torch.float32), device=device)
        idx, kept_mass = A.select_blocks(scores, keep.to(device), None if f is None else f.to(device))
        assert idx.shape == (b, h, mq, mk) and idx.dtype == torch.int32
        assert_topk_by_threshold(scores, keep, idx, f)
        # kept_mass is the kept share of each row (recomputed from the returned idx: ties may differ)
        sel = R.block_mask_from_idx(idx.cpu(), mk).double()
        s = scores.cpu().double()
        torch.testing.assert_close(kept_mass.cpu().double(), (s * sel).sum(-1) / s.sum(-1), rtol=1e-5, atol=1e-6)
        ref_idx, ref_mass = R.select_blocks_ref(scores.cpu(), keep, f)
        torch.testing.assert_close(kept_mass.cpu(), ref_mass, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_select_keep_clamped_and_range_checked(device):
    scores = torch.rand(1, 2, 3, 6, device=device)
    forced = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool, device=device)
    idx, _ = A.select_blocks(scores, torch.tensor([6, 6], dtype=torch.int32, device=device), forced)
    assert (idx >= 0).all()  # keep clamps to the 4 non-forced blocks, plus 2 forced
    with pytest.raises(ValueError, match="'keep' values must lie in"):
        A.select_blocks(scores.cpu(), torch.tensor([7, 0], dtype=torch.int32))
    with pytest.raises(ValueError, match="keep: values must lie in"):
        A.select_blocks(scores, torch.tensor([-1, 0], dtype=torch.int32, device=device), check=True)


@pytest.mark.parametrize("device", DEVICES)
def test_scale_argument(device):
    require_kernels(device, "attn_search", torch.bfloat16, 64, 64)
    q, k, v = make_qkv(1, 1, 100, 100, 64, torch.bfloat16, device)
    idx = random_idx(1, 1, 2, 2, 2, density=1.0, device=device)
    run_sparse_and_check(q, k, v, idx, 64, "scale=0.3", scale=0.3)
    out, lse, s = A.attn_search(q, k, v, 64, 0.3)
    ro, rl, rs = R.attn_search_ref(q, k, v, 64, 0.3)
    check_lse(lse, rl, "search scale")
    torch.testing.assert_close(s.double(), rs, rtol=2e-3, atol=1e-2)


def random_packed(b, h, mq, mk, width, density, device="cpu"):
    """uint8 [B, H, Mq, ceil(mk / 8)]: random patterns of at most `width` blocks per row (as the
    runtime caches them), query block 0 empty, and stray set bits above mk in the last byte, which
    every reader must ignore."""
    bits = torch.rand(b, h, mq, mk) < density
    bits &= bits.cumsum(-1) <= width
    bits[:, :, :1] = False
    nbytes = (mk + 7) // 8
    padded = torch.ones(b, h, mq, nbytes * 8, dtype=torch.bool)
    padded[..., :mk] = bits
    weights = 1 << torch.arange(8)
    return (padded.unflatten(-1, (nbytes, 8)).long() * weights).sum(-1).to(torch.uint8).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mq,mk", [(1, 1), (3, 7), (5, 8), (4, 13), (6, 64), (3, 70), (2, 333)])
@pytest.mark.parametrize("text_qblocks,text_first", [(0, False), (1, False), (3, False), (1, True), (2, True)])
def test_mask_to_idx_equals_unpack_and_text_lists(device, mq, mk, text_qblocks, text_first):
    """mask_to_idx is the runtime's old sparse-step pipeline in one kernel: exactly
    _with_text_lists(unpack_block_mask(...)) for widths below and equal to mk, empty rows,
    text query blocks before or after the video ones."""
    from adaspa_ext.runtime import _with_text_lists, unpack_block_mask
    for width in sorted({0, 1, mk // 3, mk}):
        for density in (0.2, 1.0):
            packed = random_packed(2, 3, mq, mk, width, density, device)
            want = _with_text_lists(unpack_block_mask(packed, mk, width), mk, text_qblocks, text_first)
            got = A.mask_to_idx(packed, mk, width, text_qblocks, text_first)
            assert got.dtype == torch.int32 and got.is_contiguous() and got.device == packed.device
            assert got.shape == want.shape and torch.equal(got, want), (width, density)


@pytest.mark.parametrize("device", DEVICES)
def test_mask_to_idx_empty_shapes_and_truncation(device):
    from adaspa_ext.runtime import unpack_block_mask
    assert A.mask_to_idx(torch.zeros(0, 2, 3, 2, dtype=torch.uint8, device=device), 9, 4, 2).shape == (0, 2, 5, 9)
    assert A.mask_to_idx(torch.zeros(1, 1, 0, 1, dtype=torch.uint8, device=device), 5, 5).shape == (1, 1, 0, 5)
    full = A.mask_to_idx(torch.zeros(1, 1, 0, 0, dtype=torch.uint8, device=device), 0, 0, 2, True)
    assert full.shape == (1, 1, 2, 0)
    # more set bits than width: the first width blocks (unpack_block_mask would index out of range)
    packed = torch.tensor([[[[0b10110110, 0b1]]]], dtype=torch.uint8, device=device)
    assert A.mask_to_idx(packed, 9, 3).tolist() == [[[[1, 2, 4]]]]
    assert A.mask_to_idx(packed, 9, 9).tolist() == [[[[1, 2, 4, 5, 7, 8, -1, -1, -1]]]]
    assert torch.equal(A.mask_to_idx(packed, 9, 6), unpack_block_mask(packed, 9, 6))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_sparse_attn_out_writes_what_sparse_attn_returns(device, layout):
    """Into a fresh tensor, into the rows of a larger buffer (its slice, any layout), and into a
    tensor whose base is not 16-byte aligned (written through an aligned copy on the GPU):
    bit-identical to sparse_attn, nothing else touched; it returns nothing (no lse is made)."""
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    q, k, v = make_qkv(1, 2, 300, 260, 64, torch.bfloat16, device, layout=layout)
    idx = random_idx(1, 2, 5, 5, 4, density=0.6, device=device)
    want, _ = A.sparse_attn(q, k, v, idx, 64)
    out = torch.full_like(q, float("nan"))
    assert A.sparse_attn_out(q, k, v, idx, out, 64) is None
    assert torch.equal(out, want)
    for lo in (40, 3):
        big = torch.full((1, 2, 300 + lo + 7, 64), float("nan"), dtype=q.dtype, device=device)
        if layout == "bnhd":
            big = big.transpose(1, 2).contiguous().transpose(1, 2)
        A.sparse_attn_out(q, k, v, idx, big[:, :, lo:lo + 300], 64)
        assert torch.equal(big[:, :, lo:lo + 300], want), lo
        assert big[:, :, :lo].isnan().all() and big[:, :, lo + 300:].isnan().all()
    flat = torch.full((q.numel() + 1,), float("nan"), dtype=q.dtype, device=device)
    shifted = flat[1:].view(1, 2, 300, 64) if layout == "bhnd" else flat[1:].view(1, 300, 2, 64).transpose(1, 2)
    assert shifted.data_ptr() % 16 != 0
    A.sparse_attn_out(q, k, v, idx, shifted, 64)
    assert torch.equal(shifted, want) and flat[0].isnan()
    with pytest.raises(RuntimeError, match="sparse_attn_out writes into 'out' and has no autograd"):
        A.sparse_attn_out(q.requires_grad_(), k, v, idx, out, 64)
    with torch.no_grad():
        A.sparse_attn_out(q, k, v, idx, out, 64)

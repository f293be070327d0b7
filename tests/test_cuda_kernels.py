"""GPU-only checks: big odd shapes, FlexAttention on the same mask, CUDA graphs, 64-bit offsets."""
import math

import pytest
import torch
import torch.nn.functional as F

import adaspa_ext as A
from adaspa_ext import baselines as B
from adaspa_ext import ops
from adaspa_ext import reference as R
from conftest import require_kernels, use_path
from util import assert_within_torch_error, check_lse, make_qkv, poison, random_idx, torch_same_precision_attention

pytestmark = pytest.mark.gpu


def rows_subset_reference(q, k, v, idx, bs, rows):
    """float64 sparse reference for the query rows `rows` only (big N)."""
    nk = k.shape[2]
    mk = math.ceil(nk / bs)
    bmask = R.block_mask_from_idx(idx, mk)[:, :, torch.div(rows, bs, rounding_mode="floor")]  # [B,H,R,Mk]
    tmask = bmask.repeat_interleave(bs, dim=-1)[..., :nk]
    qs = q[:, :, rows]
    s = torch.einsum("bhqd,bhkd->bhqk", qs.double(), k.double()) * q.shape[-1] ** -0.5
    s = s.masked_fill(~tmask, -math.inf)
    lse = torch.logsumexp(s, -1)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return torch.einsum("bhqk,bhkd->bhqd", p, v.double()), lse, tmask


@pytest.mark.parametrize("d,bs", [(128, 64), (64, 128)])
def test_long_odd_sequence(d, bs):
    require_kernels("cuda", "attn_search", torch.bfloat16, d, bs)
    require_kernels("cuda", "sparse_attn", torch.bfloat16, d, bs)
    n = 32768 + 17
    q, k, v = make_qkv(1, 2, n, n, d, torch.bfloat16, "cuda", layout="bnhd")
    mq = mk = math.ceil(n / bs)
    idx = random_idx(1, 2, mq, mk, mk, density=0.1, device="cuda")
    poison(((1, 2, n, d), torch.bfloat16), ((1, 2, n), torch.float32), device="cuda")
    out, lse = A.sparse_attn(q, k, v, idx, bs)
    rows = torch.cat([torch.arange(0, 8), torch.arange(n // 2, n // 2 + 8), torch.arange(n - 17, n)]).cuda()
    ref_out, ref_lse, tmask = rows_subset_reference(q, k, v, idx, bs, rows)
    yard = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=tmask)
    assert_within_torch_error(out[:, :, rows], ref_out, yard, 2e-3, "long sparse")
    check_lse(lse[:, :, rows], ref_lse, "long sparse lse")
    # search on the same input: dense out / lse and the row sums of the scores
    out_d, lse_d, scores = A.attn_search(q, k, v, bs)
    full = torch.arange(mk, device="cuda", dtype=torch.int32).expand(1, 2, mq, mk)
    ref_out_d, ref_lse_d, _ = rows_subset_reference(q, k, v, full, bs, rows)
    assert_within_torch_error(out_d[:, :, rows], ref_out_d, F.scaled_dot_product_attention(q[:, :, rows], k, v),
                              2e-3, "long search")
    check_lse(lse_d[:, :, rows], ref_lse_d, "long search lse")
    want = torch.full((mq,), float(bs), device="cuda", dtype=torch.float64)
    want[-1] = n - (mq - 1) * bs
    torch.testing.assert_close(scores.double().sum(-1), want.expand(1, 2, mq), rtol=1e-3, atol=1e-2)


def test_kernel_path_choice_and_errors(monkeypatch):
    """auto takes hopper exactly where it is compiled and the device is compute capability 9.0;
    a forced path without kernels and a bad ADASPA_KERNEL_PATH raise, naming what exists."""
    path, dt, d, bs = ops.compiled_tuples("sparse_attn")[0]
    q = torch.randn(1, 1, 100, d, device="cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dt])
    hopper_ok = torch.cuda.get_device_capability() == (9, 0)
    for op in ("sparse_attn", "attn_search", "block_scores"):
        tuples = ops.compiled_tuples(op)
        if (dt, d, bs) not in {t[1:] for t in tuples}:
            continue
        has_hopper = ("hopper", dt, d, bs) in tuples
        monkeypatch.delenv("ADASPA_KERNEL_PATH", raising=False)
        assert ops.kernel_path(q, bs, op) == ("hopper" if hopper_ok and has_hopper else "portable")
        with ops.use_kernel_path("portable"):
            assert ops.kernel_path(q, bs, op) == "portable"
        with ops.use_kernel_path("hopper"):
            if hopper_ok and has_hopper:
                assert ops.kernel_path(q, bs, op) == "hopper"
            else:
                with pytest.raises(ValueError, match=f"adaspa.{op}: ADASPA_KERNEL_PATH=hopper, but .*hopper kernels"):
                    ops.kernel_path(q, bs, op)
                with pytest.raises(ValueError, match="ADASPA_KERNEL_PATH=hopper"):
                    A.block_scores(q, q, torch.zeros(1, 1, 100, device="cuda"), bs) if op == "block_scores" else \
                        A.attn_search(q, q, q, bs) if op == "attn_search" else \
                        A.sparse_attn(q, q, q, torch.zeros(1, 1, math.ceil(100 / bs), 1, dtype=torch.int32, device="cuda"), bs)
    monkeypatch.setenv("ADASPA_KERNEL_PATH", "sm90")
    with pytest.raises(ValueError, match="ADASPA_KERNEL_PATH must be auto, portable or hopper"):
        ops.kernel_path(q, bs)
    assert ops.kernel_path(q.cpu(), bs) == "cpu"


def flex_reference(q, k, v, idx, bs):
    return B.flex_attention(q, k, v, B.flex_block_mask(idx, q.shape[2], k.shape[2], bs), bs)


@pytest.mark.parametrize("path", ops.KERNEL_PATHS)
@pytest.mark.parametrize("bs", [64, 128])
@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 1.0])
def test_matches_flex_attention(path, bs, density, monkeypatch):
    require_kernels("cuda", "sparse_attn", torch.bfloat16, 128, bs, path)
    use_path(monkeypatch, path)
    n = 4096
    q, k, v = make_qkv(1, 4, n, n, 128, torch.bfloat16, "cuda")
    m = n // bs
    idx = random_idx(1, 4, m, m, m, density=density, device="cuda")
    out, _ = A.sparse_attn(q, k, v, idx, bs)
    flex = flex_reference(q, k, v, idx, bs)
    ref_out, _ = R.sparse_attn_ref(q, k, v, idx, bs)
    assert_within_torch_error(out, ref_out, flex, 2e-3, f"vs flex density={density}")
    if density == 1.0:
        assert_within_torch_error(out, ref_out, F.scaled_dot_product_attention(q, k, v), 2e-3, "vs sdpa")


def test_cuda_graph_capture_and_replay():
    require_kernels("cuda", "attn_search", torch.float16, 64, 64)
    require_kernels("cuda", "sparse_attn", torch.float16, 64, 64)
    q, k, v = make_qkv(1, 2, 1000, 1000, 64, torch.float16, "cuda")
    keep = torch.tensor([3, 5], dtype=torch.int32, device="cuda")
    forced = torch.zeros(16, dtype=torch.bool, device="cuda")
    forced[0] = True

    def step():
        out0, lse, scores = A.attn_search(q, k, v, 64)
        idx, kept = A.select_blocks(scores, keep, forced)
        out, lse2 = A.sparse_attn(q, k, v, idx, 64)
        s2 = A.block_scores(q, k, lse, 64)
        return out0, lse, scores, idx, kept, out, lse2, s2

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static = step()
    for t, new in zip((q, k, v), make_qkv(1, 2, 1000, 1000, 64, torch.float16, "cuda")):
        t.copy_(new)
    g.replay()
    torch.cuda.synchronize()
    eager = step()
    for s, e in zip(static, eager):
        torch.testing.assert_close(s, e, rtol=0, atol=0)


@pytest.mark.slow
def test_64bit_offsets():
    require_kernels("cuda", "attn_search", torch.bfloat16, 128, 64)
    require_kernels("cuda", "sparse_attn", torch.bfloat16, 128, 64)
    # k and v hold 2^31 + 12800 elements each: row offsets past 2^31 must not wrap. The last two key
    # blocks (which hold the 100 rows past 2^31 elements) get keys aligned with every query, so they
    # carry almost all the softmax mass (> 95 %, asserted): a K or V row read from the wrong place
    # moves out by O(1).
    # (With random keys instead, out is a mean over 2^24 rows, ~1e-4, and the 100 rows that need
    # 64-bit offsets change it by a few 1e-3 relative: below the bf16 error.)
    nk, nq, d, bs = (1 << 24) + 100, 128, 128, 64
    mk = math.ceil(nk / bs)
    tail = (mk - 2) * bs
    u = torch.randn(d, device="cuda")
    q = (u + 0.3 * torch.randn(1, 1, nq, d, device="cuda")).bfloat16()
    k = torch.randn(1, 1, nk, d, device="cuda", dtype=torch.bfloat16)
    k[:, :, tail:] = (2.2 * u + 0.3 * torch.randn(nk - tail, d, device="cuda")).bfloat16()
    v = torch.randn(1, 1, nk, d, device="cuda", dtype=torch.bfloat16)
    blocks = [0, mk - 3, mk - 2, mk - 1]
    idx = torch.tensor(blocks, dtype=torch.int32, device="cuda").expand(1, 1, 2, 4).contiguous()
    out, lse = A.sparse_attn(q, k, v, idx, bs)
    cols = torch.cat([torch.arange(b * bs, min(nk, (b + 1) * bs)) for b in blocks]).cuda()
    ref_out, ref_lse = R.dense_attn_ref(q, k[:, :, cols], v[:, :, cols])
    yard = F.scaled_dot_product_attention(q, k[:, :, cols], v[:, :, cols])
    assert_within_torch_error(out, ref_out, yard, 2e-3, "64-bit sparse")
    check_lse(lse, ref_lse, "64-bit lse")
    # The search walks every key: its out, lse and the last blocks' scores need 64-bit offsets too
    # (its flash pass carries K / V pointers from tile to tile, the sparse D 128 / block 64 one not).
    out_d, lse_d, scores = A.attn_search(q, k, v, bs)
    chunks = [torch.einsum("qd,kd->qk", q[0, 0].double(), k[0, 0, i:i + (1 << 20)].double()) * d ** -0.5
              for i in range(0, nk, 1 << 20)]
    ref_lse_d = torch.logsumexp(torch.stack([torch.logsumexp(c, -1) for c in chunks], -1), -1)
    check_lse(lse_d[0, 0], ref_lse_d, "64-bit search lse")
    tail_logits = chunks[-1][:, tail - (len(chunks) - 1) * (1 << 20):]  # the rows of the last two key blocks
    p_tail = torch.exp(tail_logits - ref_lse_d.unsqueeze(-1))
    assert p_tail.sum(-1).min() > 0.95, f"test setup: the last two blocks hold only {p_tail.sum(-1).min():.3f}"
    ref_out_d = sum(torch.exp(c - ref_lse_d.unsqueeze(-1)) @ v[0, 0, i:i + (1 << 20)].double()
                    for i, c in zip(range(0, nk, 1 << 20), chunks))
    # The check can see a wrap: 32-bit element offsets would read V rows 0-99 for the tail's rows.
    wrap_shift = (p_tail @ (v[0, 0, :nk - tail].double() - v[0, 0, tail:].double())).abs().max().item()
    assert wrap_shift > 0.1, f"test setup: a wrapped V read would move out by only {wrap_shift:.3e}"
    yard_d = F.scaled_dot_product_attention(q, k, v)[0, 0]
    assert_within_torch_error(out_d[0, 0], ref_out_d, yard_d, 2e-3, "64-bit search out")
    p = torch.exp(tail_logits - lse_d[0, 0].double().unsqueeze(-1))
    want = torch.stack([p[:64, :bs].sum(), p[:64, bs:].sum(), p[64:, :bs].sum(), p[64:, bs:].sum()])
    got = torch.stack([scores[0, 0, 0, mk - 2], scores[0, 0, 0, mk - 1], scores[0, 0, 1, mk - 2], scores[0, 0, 1, mk - 1]])
    torch.testing.assert_close(got.double(), want, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("bs", [64, 128])
def test_search_scratch_slots_shared_by_waiting_ctas(bs, monkeypatch):
    """The hopper attn_search keeps each CTA's block lse in a scratch slot it holds while it runs.
    With one or three slots for 96 CTAs, CTAs wait for each other's slots and reuse them: the
    result is bit-identical to the default (a slot per SM) and the scores match float64."""
    require_kernels("cuda", "attn_search", torch.bfloat16, 128, bs, "hopper")
    use_path(monkeypatch, "hopper")
    q, k, v = make_qkv(2, 3, 2000, 1500, 128, torch.bfloat16, "cuda")
    monkeypatch.delenv("ADASPA_SEARCH_SLOTS", raising=False)
    want = A.attn_search(q, k, v, bs)
    _, _, ref_scores = R.attn_search_ref(q, k, v, bs)
    torch.testing.assert_close(want[2].double(), ref_scores, rtol=2e-3, atol=1e-4 * bs)
    for slots in ("1", "3"):
        monkeypatch.setenv("ADASPA_SEARCH_SLOTS", slots)
        poison(((2, 3, 2000, 128), torch.bfloat16), ((2, 3, 2000), torch.float32),
               ((2, 3, math.ceil(2000 / bs), math.ceil(1500 / bs)), torch.float32), device="cuda")
        got = A.attn_search(q, k, v, bs)
        for g, w in zip(got, want):
            assert torch.equal(g, w), f"{slots} slots"
    monkeypatch.setenv("ADASPA_SEARCH_SLOTS", "0")
    with pytest.raises(ValueError, match="ADASPA_SEARCH_SLOTS must be a positive integer"):
        A.attn_search(q, k, v, bs)

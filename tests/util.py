"""Test helpers: inputs, poisoned outputs, the tolerance rule, sparse indices."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adaspa_ext import reference as R


def make_qkv(b, h, nq, nk, d, dtype, device, layout="bhnd"):
    """Random q, k, v [B, H, N, D]; layout 'bnhd' returns transpose(1, 2) views of [B, N, H, D]."""
    def one(n):
        if layout == "bnhd":
            return torch.randn(b, n, h, d, device=device, dtype=dtype).transpose(1, 2)
        return torch.randn(b, h, n, d, device=device, dtype=dtype)
    return one(nq), one(nk), one(nk)


def poison(*shapes_dtypes, device):
    """Fill then free blocks of the given (shape, dtype) so the caching allocator hands NaN memory
    to the next allocations of those sizes: unwritten outputs then show up as NaN."""
    if torch.device(device).type != "cuda":
        return
    bufs = [torch.full(s, float("nan"), dtype=dt, device=device) if dt.is_floating_point
            else torch.full(s, -7777, dtype=dt, device=device) for s, dt in shapes_dtypes]
    del bufs


def random_idx(b, h, mq, mk, kmax, density=None, device="cpu", generator=None):
    """[B, H, Mq, kmax] int32: per row `round(density * mk)` (or kmax) distinct random blocks,
    ascending, -1 padded."""
    n = kmax if density is None else min(kmax, round(density * mk))
    scores = torch.rand(b, h, mq, mk, generator=generator)
    top = scores.topk(n, dim=-1).indices if n > 0 else torch.empty(b, h, mq, 0, dtype=torch.long)
    top = top.sort(dim=-1).values
    idx = torch.full((b, h, mq, kmax), -1, dtype=torch.int32)
    idx[..., :n] = top.int()
    return idx.to(device)


def torch_same_precision_attention(q, k, v, token_mask, scale):
    """PyTorch's own attention in the inputs' precision (the tolerance yardstick). Rows with no
    allowed key are returned as 0, like the kernels."""
    empty = ~token_mask.any(-1, keepdim=True)
    mask = token_mask | empty  # SDPA would produce NaN for empty rows
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.masked_fill(empty, 0)


def floor_for(dtype):
    return 1e-5 if dtype == torch.float32 else 2e-3


def assert_within_torch_error(got, ref, yardstick, floor, what):
    """The project's tolerance rule: max error <= 2x PyTorch's own same-precision error + a small floor."""
    got, ref, yardstick = got.double(), ref.double(), yardstick.double()
    assert torch.isfinite(got).all(), f"{what}: non-finite values (unwritten or NaN)"
    err = (got - ref).abs().max().item() if ref.numel() else 0.0
    base = (yardstick - ref).abs().max().item() if ref.numel() else 0.0
    assert err <= 2 * base + floor, f"{what}: max error {err:.3e} > 2 x torch error {base:.3e} + {floor:.1e}"


def check_lse(lse, ref_lse, what, tol=2e-3):
    """lse: -inf exactly where the reference is -inf, else within tol (float32 logits)."""
    inf = torch.isinf(ref_lse)
    assert torch.equal(torch.isinf(lse) & (lse < 0), inf), f"{what}: -inf rows differ"
    if (~inf).any():
        err = (lse.double()[~inf] - ref_lse[~inf]).abs().max().item()
        assert err <= tol, f"{what}: lse max error {err:.3e} > {tol}"


def token_mask_from_idx(idx, nq, nk, block_size):
    mk = math.ceil(nk / block_size)
    return R.expand_block_mask(R.block_mask_from_idx(idx, mk), nq, nk, block_size)


def assert_topk_by_threshold(scores, keep, idx, forced=None):
    """Per row: exact count, ascending, -1 padding, forced blocks present, and every kept non-forced
    score >= every dropped non-forced score."""
    b, h, mq, mk = scores.shape
    forced = torch.zeros(mk, dtype=torch.bool) if forced is None else forced.cpu()
    n_cand = int((~forced).sum())
    s, idx = scores.cpu().double(), idx.cpu().long()
    for hh in range(h):
        k = max(0, min(int(keep[hh]), n_cand))
        want = k + int(forced.sum())
        rows = idx[:, hh].reshape(-1, mk)
        srow = s[:, hh].reshape(-1, mk)
        valid = rows >= 0
        assert (valid.sum(-1) == want).all(), f"head {hh}: expected {want} kept blocks per row"
        assert (valid[:, :want].all() and not valid[:, want:].any()), "padding must come last"
        kept = rows[:, :want]
        assert (kept[:, 1:] > kept[:, :-1]).all(), "kept blocks must be strictly ascending"
        for r in range(rows.shape[0]):
            sel = torch.zeros(mk, dtype=torch.bool)
            sel[kept[r]] = True
            assert sel[forced].all(), "every forced block must be kept"
            cand_kept = srow[r][sel & ~forced]
            cand_drop = srow[r][~sel & ~forced]
            if cand_kept.numel() and cand_drop.numel():
                assert cand_kept.min() >= cand_drop.max(), f"row {r} head {hh}: a dropped block outscores a kept one"

"""Pure-PyTorch float64 references of the four adaspa ops (the expanded dense-mask route).

Independent of the C++/CUDA kernels: every op is computed by materialising the full
[B, H, Nq, Nk] logits in float64 and masking. Memory is O(Nq * Nk) per (batch, head), so these
are for tests and small benchmarks. Shapes (bs = block size):
  q [B, H, Nq, D], k / v [B, H, Nk, D]; lse [B, H, Nq]; scores [B, H, Mq, Mk];
  idx [B, H, Mq, Kmax] int (ascending, -1 padded); Mq = ceil(Nq / bs), Mk = ceil(Nk / bs).
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "accepted_entries", "block_mask_from_idx", "dense_attn_ref", "sparse_attn_ref", "attn_search_ref",
    "block_scores_ref", "select_blocks_ref", "expand_block_mask",
]


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


def accepted_entries(idx: torch.Tensor, mk: int) -> torch.Tensor:
    """Bool mask over idx entries that a kernel visits: in [0, mk) and strictly greater than every
    earlier in-range entry of the row. For an ascending duplicate-free list this is "not padding"."""
    idx = idx.long()
    in_range = (idx >= 0) & (idx < mk)
    x = torch.where(in_range, idx, torch.full_like(idx, -1))
    prev = torch.cummax(x, dim=-1).values
    prev = torch.cat([torch.full_like(prev[..., :1], -1), prev[..., :-1]], dim=-1)
    return in_range & (idx > prev)


def block_mask_from_idx(idx: torch.Tensor, mk: int) -> torch.Tensor:
    """[B, H, Mq, Kmax] block lists -> [B, H, Mq, Mk] bool block mask."""
    acc = accepted_entries(idx, mk)
    mask = torch.zeros(*idx.shape[:-1], mk + 1, dtype=torch.bool, device=idx.device)
    target = torch.where(acc, idx.long(), torch.full_like(idx, mk, dtype=torch.long))
    mask.scatter_(-1, target, True)
    return mask[..., :mk]


def expand_block_mask(block_mask: torch.Tensor, nq: int, nk: int, block_size: int) -> torch.Tensor:
    """[..., Mq, Mk] block mask -> [..., Nq, Nk] token mask."""
    m = block_mask.repeat_interleave(block_size, dim=-2).repeat_interleave(block_size, dim=-1)
    return m[..., :nq, :nk]


def _masked_attention(q, k, v, mask, scale):
    """float64 softmax attention with a [B, H, Nq, Nk] bool mask; empty rows give out 0, lse -inf."""
    s = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) * scale
    s = s.masked_fill(~mask, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1).masked_fill(torch.isinf(lse).unsqueeze(-1), 0.0))
    p = p.masked_fill(~mask, 0.0)
    out = torch.einsum("bhqk,bhkd->bhqd", p, v.double())
    return out, lse, p


def dense_attn_ref(q, k, v, scale=None):
    """Dense attention in float64: (out [B,H,Nq,D], lse [B,H,Nq])."""
    mask = torch.ones(q.shape[0], q.shape[1], q.shape[2], k.shape[2], dtype=torch.bool, device=q.device)
    out, lse, _ = _masked_attention(q, k, v, mask, _scale(q, scale))
    return out, lse


def sparse_attn_ref(q, k, v, idx, block_size=64, scale=None):
    """Block-sparse attention in float64: each query block attends to the key blocks of its idx row."""
    nq, nk = q.shape[2], k.shape[2]
    mk = math.ceil(nk / block_size)
    mask = expand_block_mask(block_mask_from_idx(idx, mk), nq, nk, block_size)
    out, lse, _ = _masked_attention(q, k, v, mask, _scale(q, scale))
    return out, lse


def _block_sum(p: torch.Tensor, block_size: int) -> torch.Tensor:
    """[B, H, Nq, Nk] -> [B, H, Mq, Mk] sums over (block_size x block_size) tiles (partial at the end)."""
    b, h, nq, nk = p.shape
    mq, mk = math.ceil(nq / block_size), math.ceil(nk / block_size)
    p = torch.nn.functional.pad(p, (0, mk * block_size - nk, 0, mq * block_size - nq))
    return p.reshape(b, h, mq, block_size, mk, block_size).sum(dim=(3, 5))


def attn_search_ref(q, k, v, block_size=64, scale=None):
    """Dense attention plus block scores S[i, j] = sum over the tile of exp(scale q.k - lse)."""
    mask = torch.ones(q.shape[0], q.shape[1], q.shape[2], k.shape[2], dtype=torch.bool, device=q.device)
    out, lse, p = _masked_attention(q, k, v, mask, _scale(q, scale))
    return out, lse, _block_sum(p, block_size)


def block_scores_ref(q, k, lse, block_size=64, scale=None):
    """Block scores from a given (possibly stale) lse: sum over each tile of exp(scale q.k - lse)."""
    s = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) * _scale(q, scale)
    return _block_sum(torch.exp(s - lse.double().unsqueeze(-1)), block_size)


def select_blocks_ref(scores, keep, forced_kv=None):
    """Row-wise top-keep[h] of the non-forced blocks plus all forced blocks, ascending, -1 padded to
    width Mk; kept_mass = kept share of the row total. Ties go to the lower block index."""
    b, h, mq, mk = scores.shape
    s = scores.double()
    forced = (torch.zeros(mk, dtype=torch.bool, device=s.device) if forced_kv is None
              else forced_kv.to(s.device).bool())
    n_cand = int((~forced).sum())
    keep = keep.to(s.device).long().clamp(0, n_cand)
    # Sort descending by score, ascending by index among ties: stable sort on -score.
    cand = s.masked_fill(forced, -math.inf)
    order = torch.sort(-cand, dim=-1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(mk, device=s.device).expand_as(order))
    chosen = (rank < keep.view(1, h, 1, 1)) & ~forced | forced
    pos = torch.arange(mk, device=s.device).expand_as(chosen)
    idx = torch.sort(torch.where(chosen, pos, torch.full_like(pos, mk)), dim=-1).values
    idx = torch.where(idx == mk, torch.full_like(idx, -1), idx).int()
    total = s.sum(-1)
    kept = (s * chosen).sum(-1)
    kept_mass = torch.where(total != 0, kept / torch.where(total != 0, total, torch.ones_like(total)),
                            torch.zeros_like(total))
    return idx, kept_mass.float()

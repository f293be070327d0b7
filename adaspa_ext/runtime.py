"""The AdaSpa runtime: head-adaptive search-and-reuse across denoising steps (docs/method.md).

Generic entry for any model: `adaspa_attention(q, k, v, state, session, text=...)` with q, k, v
as [B, H, N, D] (views of [B, N, H, D] are fine). The session tracks the denoising step (and the
CFG branch when cond / uncond are separate calls); each attention layer owns a `LayerState`
holding its cached LSE and block pattern (packed bits, 1 bit per (row, key block)); on the CPU it
also keeps the pattern as the kernel's idx, ready for the next sparse step. On a GPU a sparse step
is two launches: ops.mask_to_idx (the packed pattern to the kernel's idx) and sparse_attn, written
into one output laid out like q.

Per layer and branch, with the config's warm-up t_w and search steps T_s:
  steps < first search          dense attention (torch SDPA: cuDNN / FlashAttention)
  first search step             fused search: dense output, LSE cached, pattern selected
  later search steps            LSE-cached scores, pattern re-selected, sparse attention
  other steps after the search  sparse attention with the cached pattern
A layer with nothing cached at a sparse or search step (a layer first seen late, e.g. the second
expert of Wan 2.2) runs the fused search there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .config import AdaSpaConfig
from .presets import Preset

__all__ = ["TextSpec", "HeadShard", "LayerState", "AdaSpaSession", "adaspa_attention", "pack_block_mask",
           "unpack_block_mask", "text_block_span", "forced_key_blocks", "branch_state", "estimate_cache_bytes",
           "kept_share", "head_work", "rank_work", "work_imbalance", "balanced_head_order"]


@dataclass(frozen=True)
class TextSpec:
    """Text tokens inside a self-attention sequence.

    length: text tokens in the sequence, padding included (0: video only, e.g. Wan).
    first: True for [text | video] (CogVideoX), False for [video | text] (HunyuanVideo).
    valid: valid text tokens per batch element (the rest is padding, dropped from the keys), or
        None when all are valid. Valid tokens come first within the text segment.
    """
    length: int = 0
    first: bool = False
    valid: tuple[int, ...] | None = None


@dataclass(frozen=True)
class HeadShard:
    """This process holds some heads of a layer whose heads are spread over a process group (Ulysses
    sequence parallelism: after the sequence -> head all-to-all each rank holds the whole sequence
    of H / world heads).

    order: int64 [H], the global head ids in rank order: rank r holds order[r * H / world : (r + 1) *
        H / world], in that order (the identity unless heads were rebalanced).
    The head-adaptive tiers rank every head of the layer, so `_select` gathers the per-head recall
    over the group and assigns the tiers of the whole layer, exactly as one process holding every
    head would.
    """
    group: object
    rank: int
    world: int
    order: Tensor

    @property
    def heads(self) -> Tensor:
        """Global ids of this rank's heads, in local order."""
        hl = self.order.numel() // self.world
        return self.order[self.rank * hl:(self.rank + 1) * hl]

    def gather(self, t: Tensor, dim: int = 0) -> Tensor:
        """Per-local-head values (heads along `dim`) of every rank, in rank order (torch.distributed
        all_gather over the group): positions follow `order`, not the global head ids."""
        import torch.distributed as dist
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t, group=self.group)
        return torch.cat(parts, dim=dim)

    def gather_global(self, t: Tensor) -> Tensor:
        """[H_local] per-head values of every rank -> [H] indexed by global head id."""
        ranked = self.gather(t)
        out = torch.empty_like(ranked)
        out[self.order.to(ranked.device)] = ranked
        return out


# --------------------------------------------------------------------------------------------
# Packed block patterns: the cache keeps 1 bit per (query block, key block); a sparse step turns it
# into the -1 padded idx of the ops with ops.mask_to_idx (one kernel). pack_block_mask and
# unpack_block_mask are the format in plain PyTorch (the search packs with it; tests unpack with it).


def pack_block_mask(idx: Tensor, mk: int) -> Tensor:
    """idx [..., K] (ascending, -1 padded) -> uint8 [..., ceil(mk / 8)] bit mask."""
    nbytes = (mk + 7) // 8
    m = torch.zeros(*idx.shape[:-1], nbytes * 8 + 1, dtype=torch.bool, device=idx.device)
    m.scatter_(-1, torch.where(idx >= 0, idx, nbytes * 8).long(), True)
    bits = m[..., : nbytes * 8].unflatten(-1, (nbytes, 8)).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8, device=idx.device)).sum(-1, dtype=torch.uint8)


def unpack_block_mask(packed: Tensor, mk: int, width: int) -> Tensor:
    """uint8 [..., ceil(mk / 8)] -> int32 idx [..., width]: set blocks ascending, then -1."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = ((packed.unsqueeze(-1) >> shifts) & 1).flatten(-2)[..., :mk].bool()
    pos = torch.cumsum(bits, dim=-1, dtype=torch.int32) - 1
    out = torch.full((*bits.shape[:-1], width + 1), -1, dtype=torch.int32, device=packed.device)
    src = torch.arange(mk, dtype=torch.int32, device=packed.device).expand(bits.shape)
    out.scatter_(-1, torch.where(bits, pos, width).long(), src)
    return out[..., :width]


def text_block_span(lo: int, hi: int, block_size: int) -> tuple[int, int]:
    """Key blocks [first, end) holding any token of [lo, hi) (the text sink); (0, 0) if empty."""
    return (lo // block_size, math.ceil(hi / block_size)) if hi > lo else (0, 0)


def forced_key_blocks(mk: int, lo: int, hi: int, block_size: int, device) -> Tensor:
    """bool [mk]: key blocks holding any token of [lo, hi) (the text sink)."""
    first, end = text_block_span(lo, hi, block_size)
    blocks = torch.arange(mk, device=device)
    return (blocks >= first) & (blocks < end)


# --------------------------------------------------------------------------------------------


@dataclass
class LayerState:
    """What one attention layer (per CFG branch) keeps between steps."""
    lse: Tensor | None = None      # [B, H, Nq_video] float32 from the fused search
    mask: Tensor | None = None     # packed pattern [B, H, Mq, ceil(Mk / 8)] uint8
    width: int = 0                 # idx width that holds every row of the pattern
    # CPU only: the idx of the sparse_attn call a sparse step makes (text query blocks' full lists
    # included when they share the call), so a step neither unpacks nor builds one. int32, KBs to
    # a few hundred KB at CPU sizes; on a GPU the packed mask alone is kept (the idx of a
    # 100K-token layer is ~10^2 MB).
    idx: Tensor | None = None
    shape_key: tuple = ()          # (B, H, Nq_video, Nk, D, N) the cache was made for
    keep: Tensor | None = None     # [H] int32 non-forced blocks kept per row (the tiers)
    recall: Tensor | None = None   # [H] mean kept_mass at the last search
    density: float = 0.0           # share of (row, key block) pairs kept at the last search
    sub: dict = field(default_factory=dict)  # per batch element, when text padding differs

    def clear(self):
        self.lse = self.mask = self.idx = self.keep = self.recall = None
        self.width, self.shape_key, self.density = 0, (), 0.0
        self.sub.clear()

    def nbytes(self) -> int:
        own = sum(t.numel() * t.element_size() for t in (self.lse, self.mask, self.idx, self.keep, self.recall)
                  if t is not None)
        return own + sum(s.nbytes() for s in self.sub.values())


def branch_state(states: list[LayerState], branch: int) -> LayerState:
    """states[branch] of a layer's per-branch list, growing the list as branches appear."""
    while len(states) <= branch:
        states.append(LayerState())
    return states[branch]


class AdaSpaSession:
    """Step / branch tracking and per-layer states for one pipeline (or model).

    `begin_forward(timestep)` is called once per transformer forward: a new timestep value
    advances the step, a repeated one is the next CFG branch of the same step, a timestep that
    does not decrease starts a new generation (states are reset). Custom loops may instead call
    `set_step(step, branch)` and `reset()`.
    """

    def __init__(self, config: AdaSpaConfig | None = None, record: bool = True):
        self.config = config or AdaSpaConfig()
        self.step = 0
        self.branch = 0
        self.phase = self.config.schedule_phase(0)
        self.text_valid: tuple[int, ...] | None = None
        self.record = record
        self.log: list[tuple[int, int, object, str]] = []  # (step, branch, layer key, phase)
        self._layers: dict[object, list[LayerState]] = {}
        self._last_t: float | None = None
        # set by apply(): the weight bytes and the number of wrapped attention layers, for
        # AdaSpaConfig.cache_lse=None (unknown: the LSE is kept)
        self.weight_bytes: int | None = None
        self.layer_count = 0

    # step tracking ----------------------------------------------------------------------------
    def set_step(self, step: int, branch: int = 0) -> None:
        self.step, self.branch = int(step), int(branch)
        self.phase = self.config.schedule_phase(self.step)

    def begin_forward(self, timestep: float) -> None:
        t = float(timestep)
        if self._last_t is None or t > self._last_t:
            if self._last_t is not None:
                self.reset()
            self.set_step(0)
        elif t == self._last_t:
            self.set_step(self.step, self.branch + 1)
        else:
            self.set_step(self.step + 1)
        self._last_t = t

    def reset(self) -> None:
        """Forget every cached pattern and the step count (a new generation)."""
        for states in self._layers.values():
            for s in states:
                s.clear()
        self.log.clear()
        self._last_t = None
        self.set_step(0)

    # states -----------------------------------------------------------------------------------
    def layer_states(self, key) -> list[LayerState]:
        """The per-branch states of layer `key` (a list the caller may keep)."""
        return self._layers.setdefault(key, [])

    def state(self, key, branch: int | None = None) -> LayerState:
        return branch_state(self.layer_states(key), self.branch if branch is None else branch)

    def cache_bytes(self) -> int:
        return sum(s.nbytes() for states in self._layers.values() for s in states)

    def keeps_lse(self, layer_lse_bytes: int) -> bool:
        """Whether a fused search keeps its LSE (layer_lse_bytes: this layer's) for the cached
        searches: AdaSpaConfig.cache_lse, or with None, whether every layer's LSE together fits
        lse_budget of the weight bytes."""
        cfg = self.config
        if cfg.cache_lse is not None:
            return cfg.cache_lse
        if self.weight_bytes is None or self.layer_count == 0:
            return True
        return layer_lse_bytes * self.layer_count <= cfg.lse_budget * self.weight_bytes

    def layer_phase(self, state: LayerState) -> str:
        """'dense', 'search_fused', 'search_cached' or 'sparse' for this layer now."""
        if self.phase == "dense":
            return "dense"
        if self.phase == "search":
            return "search_cached" if state.lse is not None else "search_fused"
        return "sparse" if state.mask is not None else "search_fused"


# --------------------------------------------------------------------------------------------


def _dense(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v)


def _tier_keeps(cfg: AdaSpaConfig, mk_video: int) -> tuple[int, int, int]:
    """Non-forced key blocks each row keeps in the (high-recall, base, low-recall) tiers: the
    rounded (1 - s) * mk_video, but at least one block, so a head of a pattern only a few blocks
    wide never drops every video block (its rows would output 0)."""
    hi, base, lo = cfg.tier_sparsities()
    return tuple(max(min(1, mk_video), int(round((1 - s) * mk_video))) for s in (hi, base, lo))


def _select(cfg: AdaSpaConfig, scores: Tensor, forced: Tensor, mk_video: int, st: LayerState,
            shard: HeadShard | None = None) -> Tensor:
    """Head-adaptive tiers (docs/method.md, "Head-adaptive sparsity") and row-wise top-k; returns
    full-width idx. With a shard, the tiers rank the recall of every head of the layer (gathered
    over the shard's group), so each rank keeps what one process holding all heads would."""
    h = scores.shape[1]
    k_hi, k0, k_lo = _tier_keeps(cfg, mk_video)
    dev = scores.device
    keep = torch.full((h,), k0, dtype=torch.int32, device=dev)
    if cfg.head_adaptive:
        _, kept0 = ops.select_blocks(scores, keep, forced)
        recall0 = kept0.mean(dim=(0, 2))
        if shard is not None:
            recall0 = shard.gather_global(recall0)
        ht = recall0.numel()
        n = torch.clamp((recall0 > cfg.recall_threshold).sum(), max=ht // 2)
        order = torch.argsort(recall0, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(ht, device=dev))
        keep = torch.where(rank < n, k_hi, torch.where(rank >= ht - n, k_lo, k0)).to(torch.int32)
        if shard is not None:
            keep = keep[shard.heads.to(dev)].contiguous()
    idx, kept = ops.select_blocks(scores, keep, forced)
    st.keep, st.recall = keep, kept.mean(dim=(0, 2))
    return idx


def _with_text_lists(idx: Tensor, mk: int, text_qblocks: int, text_first: bool) -> Tensor:
    """The idx of one sparse_attn call over video and text query rows: the video query blocks'
    lists (idx), padded with -1 to mk entries, and text_qblocks query blocks of text (before or
    after them) that list every key block, i.e. attend densely."""
    if not text_qblocks:
        return idx.contiguous()
    b, h, _, w = idx.shape
    full = torch.arange(mk, dtype=idx.dtype, device=idx.device).expand(b, h, text_qblocks, mk)
    video = F.pad(idx, (0, mk - w), value=-1)
    return torch.cat([full, video] if text_first else [video, full], dim=2)


def _into(out: Tensor | None, x: Tensor) -> Tensor:
    if out is None:
        return x
    out.copy_(x)
    return out


def _sparse(q, k, v, idx, bs: int, out: Tensor | None) -> Tensor:
    """sparse_attn, into `out` when given. sparse_attn_out has no autograd, so inputs that need a
    gradient go through sparse_attn (whose backward raises, as documented) and a copy."""
    if out is None:
        return ops.sparse_attn(q, k, v, idx, bs)[0]
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _into(out, ops.sparse_attn(q, k, v, idx, bs)[0])
    ops.sparse_attn_out(q, k, v, idx, out, bs)
    return out


def _adaspa_rows(q, k, v, st: LayerState, phase: str, session: AdaSpaSession, text_lo: int, text_hi: int,
                 video: slice, text_first: bool, out: Tensor | None = None, shard: HeadShard | None = None):
    """AdaSpa attention of q's rows: `video` (a block-aligned range of them) per the schedule, any
    other rows (text query rows, whole query blocks of them) densely, in the same kernel calls.
    Written into `out` (q's shape) when given, else returned as a new tensor."""
    cfg = session.config
    bs = cfg.block_size
    mk = math.ceil(k.shape[2] / bs)
    text_qblocks = math.ceil(q.shape[2] / bs) - math.ceil((video.stop - video.start) / bs)
    if phase == "sparse":  # the hot path: the cached pattern, one idx kernel (none on the CPU), attention
        idx = st.idx
        if idx is None:
            idx = ops.mask_to_idx(st.mask, mk, st.width, text_qblocks, text_first)
        return _sparse(q, k, v, idx, bs, out)
    first, end = text_block_span(text_lo, text_hi, bs)
    n_forced = end - first
    mk_video = mk - n_forced
    width = min(mk, max(_tier_keeps(cfg, mk_video)) + n_forced)
    forced = forced_key_blocks(mk, text_lo, text_hi, bs, q.device) if n_forced else None
    if phase == "search_fused":
        o, lse, scores = ops.attn_search(q, k, v, bs)
        out = _into(out, o)
        if text_qblocks:  # the text rows' dense output is kept; their LSE and scores are not needed
            lse = lse[:, :, video].contiguous()
            scores = scores[:, :, video.start // bs:math.ceil(video.stop / bs)]
        idx = _select(cfg, scores, forced, mk_video, st, shard)
        # without it the next search step is a fused one again
        st.lse = lse if session.keeps_lse(lse.numel() * lse.element_size()) else None
        kidx = _with_text_lists(idx[..., :width], mk, text_qblocks, text_first)
    else:  # search_cached
        scores = ops.block_scores(q[:, :, video], k, st.lse, bs)
        idx = _select(cfg, scores, forced, mk_video, st, shard)
        kidx = _with_text_lists(idx[..., :width], mk, text_qblocks, text_first)
        out = _sparse(q, k, v, kidx, bs, out)
    st.mask, st.width = pack_block_mask(idx[..., :width], mk), width
    st.idx = kidx if q.device.type == "cpu" else None
    if not torch.compiler.is_compiling() and idx.device.type != "meta":
        st.density = float((idx >= 0).sum()) / max(1, idx.numel())
    return out


def adaspa_attention(q: Tensor, k: Tensor, v: Tensor, state: LayerState, session: AdaSpaSession,
                     text: TextSpec = TextSpec(), layer_key: object = None, shard: HeadShard | None = None) -> Tensor:
    """AdaSpa attention for one layer call. q, k, v: [B, H, N, D] (any strides, last dim
    contiguous). Returns [B, H, N, D] laid out like q. Text query rows attend densely; video
    rows follow the schedule with every key block that holds text forced into each row; padded
    text keys are never attended. shard: q, k, v hold only some heads of the layer (the whole
    sequence of this rank's heads under Ulysses); the tiers are then assigned over all heads."""
    return _attention(q, k, v, state, session, text, layer_key, None, shard)


def _attention(q: Tensor, k: Tensor, v: Tensor, state: LayerState, session: AdaSpaSession, text: TextSpec,
               layer_key: object, out: Tensor | None, shard: HeadShard | None) -> Tensor:
    """adaspa_attention, written into `out` (q's shape) when given. Parts of the output computed
    by separate calls (batch elements, text rows) are written into one tensor, not concatenated."""
    cfg = session.config
    b, h, n, d = q.shape
    nt = text.length
    valid = text.valid if text.valid is not None else session.text_valid if nt else None
    if valid is not None and b > 1 and len(set(valid)) > 1:
        # Different text padding per batch element: different key sets, one state each.
        out = torch.empty_like(q) if out is None else out
        for i in range(b):
            _attention(q[i:i + 1], k[i:i + 1], v[i:i + 1], state.sub.setdefault(i, LayerState()), session,
                       TextSpec(nt, text.first, (valid[i],)), layer_key, out[i:i + 1], shard)
        return out
    t_valid = nt if valid is None else int(valid[0])
    nv = n - nt
    if text.first:
        k_use = k if t_valid == nt else torch.cat([k[:, :, :t_valid], k[:, :, nt:]], dim=2)
        v_use = v if t_valid == nt else torch.cat([v[:, :, :t_valid], v[:, :, nt:]], dim=2)
        text_lo, text_hi = 0, t_valid
    else:
        k_use, v_use = (k, v) if t_valid == nt else (k[:, :, :nv + t_valid], v[:, :, :nv + t_valid])
        text_lo, text_hi = nv, nv + t_valid
    shape_key = (b, h, nv, k_use.shape[2], d, n)
    if (state.lse is not None or state.mask is not None) and state.shape_key != shape_key:
        state.clear()  # the cached pattern was made for other shapes (a new resolution)
    phase = session.layer_phase(state)
    if session.record and not torch.compiler.is_compiling():
        session.log.append((session.step, session.branch, layer_key, phase))
    if phase == "dense":
        return _into(out, _dense(q, k_use, v_use))
    video = slice(nt, n) if text.first else slice(0, nv)
    state.shape_key = shape_key
    # Text query rows that fill whole query blocks (the text starts on a block boundary) join the
    # video rows' kernel call with full key lists: dense attention as the method asks, without a
    # second call, on the CPU and the GPU alike. Otherwise the query block holding the boundary
    # would need two key lists, so the text rows go through the dense kernel, and both parts are
    # written into one output.
    if nt == 0 or (nt if text.first else nv) % cfg.block_size == 0:
        return _adaspa_rows(q, k_use, v_use, state, phase, session, text_lo, text_hi, video, text.first, out, shard)
    out = torch.empty_like(q) if out is None else out
    _adaspa_rows(q[:, :, video], k_use, v_use, state, phase, session, text_lo, text_hi, slice(0, nv), False,
                 out[:, :, video], shard)
    rows = slice(0, nt) if text.first else slice(nv, n)
    out[:, :, rows] = _dense(q[:, :, rows], k_use, v_use)
    return out


# --------------------------------------------------------------------------------------------
# Work per head and its balance over ranks (Ulysses). The head-adaptive tiers give a head of the
# high-recall tier (1 - s) / 2 of the key blocks per row and one of the low-recall tier 3 (1 - s) / 2,
# 3x as many: with heads split over ranks, the rank holding the low-recall heads sets the pace.

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


def _kept_per_head(mask: Tensor) -> Tensor:
    """int64 [H]: set bits of a packed pattern [B, H, Mq, nbytes] per head."""
    return _POPCOUNT.to(mask.device)[mask.long()].sum(dim=(0, 2, 3))


def kept_share(state: LayerState, block_size: int) -> float | None:
    """Share of (video query block, key block) pairs the cached pattern keeps, counted from its bits:
    `density` of the last search, also after a compiled one (which does not record it). None
    before the first search; per-batch-element states are averaged."""
    if state.sub:
        vals = [x for x in (kept_share(s, block_size) for s in state.sub.values()) if x is not None]
        return sum(vals) / len(vals) if vals else None
    if state.mask is None:
        return None
    b, h, nv, nk, _, _ = state.shape_key
    kept = int(_kept_per_head(state.mask).sum())
    return kept / max(1, b * h * math.ceil(nv / block_size) * math.ceil(nk / block_size))


def head_work(state: LayerState, block_size: int) -> Tensor:
    """float64 [H] (the state's heads): (query block, key block) pairs each head's kernel visits
    at a sparse step, i.e. its kept blocks from the cached pattern plus the text query blocks,
    which attend to every key block; summed over the batch. Zeros before the first search."""
    if state.sub:
        return sum(head_work(s, block_size) for s in state.sub.values())
    if state.mask is None:
        return torch.zeros(state.keep.numel() if state.keep is not None else 0, dtype=torch.float64)
    b, h, nv, nk, _, n = state.shape_key
    kept = _kept_per_head(state.mask).double().cpu()
    text_qblocks = math.ceil(n / block_size) - math.ceil(nv / block_size)
    return kept + b * text_qblocks * math.ceil(nk / block_size)


def rank_work(work: Tensor, world: int, order: Tensor | None = None) -> Tensor:
    """[world] summed work of each rank's heads when rank r holds order[r * H / world : ...] (the
    identity order: contiguous heads, diffusers' Ulysses split)."""
    w = work.double().cpu()
    if order is not None:
        w = w[order.cpu()]
    return w.view(world, -1).sum(dim=1)


def work_imbalance(work: Tensor, world: int, order: Tensor | None = None) -> float:
    """max rank work / mean rank work (1.0: balanced): the time of a sparse step over its time if
    work were spread evenly, as far as attention goes."""
    r = rank_work(work, world, order)
    return float(r.max() / r.mean()) if float(r.mean()) > 0 else 1.0


def balanced_head_order(work: Tensor, world: int) -> Tensor:
    """int64 [H]: an order of the heads (rank r takes the r-th H / world of it) that balances the
    ranks' work: heads by decreasing work, each to the least loaded rank that has room (ties to the
    lower head id / rank), each rank's heads ascending. Deterministic, so every rank computes the
    same order from the same gathered work."""
    w = work.double().cpu()
    h = w.numel()
    hl = h // world
    load = [0.0] * world
    heads: list[list[int]] = [[] for _ in range(world)]
    for i in torch.argsort(-w, stable=True).tolist():
        r = min((r for r in range(world) if len(heads[r]) < hl), key=lambda r: (load[r], r))
        heads[r].append(i)
        load[r] += float(w[i])
    return torch.tensor([i for hs in heads for i in sorted(hs)], dtype=torch.int64)


def estimate_cache_bytes(preset: Preset, config: AdaSpaConfig | None = None, dtype=torch.bfloat16) -> int:
    """Cache bytes of a whole model (all layers, one CFG branch) for a preset, measured by running
    one fused search on meta tensors (no memory, no compute) and scaling by the layer count."""
    session = AdaSpaSession(config or AdaSpaConfig(), record=False)
    session.set_step(session.config.search_steps[0])
    shape = (preset.batch, preset.heads, preset.tokens, preset.head_dim)
    q, k, v = (torch.empty(shape, device="meta", dtype=dtype) for _ in range(3))
    adaspa_attention(q, k, v, session.state(0), session, TextSpec(preset.text_tokens, preset.text_first))
    return session.cache_bytes() * preset.layers

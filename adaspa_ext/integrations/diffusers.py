"""One call to run AdaSpa inside diffusers' video pipelines.

    import adaspa_ext
    from adaspa_ext.integrations import diffusers as adaspa_diffusers
    session = adaspa_diffusers.apply(pipe, adaspa_ext.AdaSpaConfig())   # or a transformer
    video = pipe(prompt, num_inference_steps=50).frames[0]
    adaspa_diffusers.remove(pipe)

Known families (FAMILIES): HunyuanVideo, HunyuanVideo 1.5, Wan 2.1 / 2.2 (TI2V 5B and both A14B
experts), CogVideoX / CogVideoX1.5. Any other transformer whose video self-attention goes through
diffusers' `dispatch_attention_fn` with nothing but video tokens in the sequence takes the generic
route: `apply(pipe, config, self_attention="attn1")` names the attention module of its blocks.
The generic route checks at every call that the sequence holds exactly the video tokens of the
input (no text, no mask, no cross-attention) and raises otherwise; a model that is neither known
nor routed is refused with the list of families.

How it hooks in, without subclassing anything of the user's:
  * every self-attention processor is wrapped; the wrapper runs diffusers' own processor code
    (projections, QK norms, RoPE) with its attention call rerouted to `adaspa_attention`;
  * a forward pre-hook on each transformer sets the denoising step and CFG branch and reads what
    the family needs (HunyuanVideo's text padding, the generic route's token count) once per
    forward. Steps: with a pipeline, from its scheduler (each `scheduler.step` ends a step, each
    forward in between is the next CFG branch, `set_timesteps` starts a new generation); with a
    bare transformer, from the timestep (a new value is the next step, a repeated one the next
    branch, a larger one a new generation); or set by the caller (`steps="manual"`:
    `session.set_step(step, branch)` before each forward).
Pinned against diffusers 0.42.1: the wrapped processors must reference the names listed in
FAMILIES (checked at apply time, with a clear error otherwise).
"""
from __future__ import annotations

import functools
import inspect
import types
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import AdaSpaConfig
from ..runtime import (AdaSpaSession, HeadShard, LayerState, TextSpec, adaspa_attention, balanced_head_order,
                       branch_state, head_work, work_imbalance)

__all__ = ["apply", "remove", "FAMILIES", "Family", "CP_PLANS", "cp_plan", "ulysses_imbalance"]


def _valid_from_mask(get) -> tuple[int, ...]:
    """HunyuanVideo: [video | text], the text's valid tokens first, counted by its attention mask."""
    return tuple(int(x) for x in get("encoder_attention_mask").sum(dim=1).tolist())


def _valid_hunyuan15(get) -> tuple[int, ...]:
    """HunyuanVideo 1.5 joins image, ByT5 and MLLM tokens into one text segment, valid tokens of
    all three first (the transformer's own reordering); image tokens are valid unless every
    image embedding is zero (text-to-video)."""
    n = get("encoder_attention_mask").bool().sum(dim=1) + get("encoder_attention_mask_2").bool().sum(dim=1)
    image = get("image_embeds")
    if image is not None and not bool(torch.all(image == 0)):
        n = n + image.shape[1]
    return tuple(int(x) for x in n.tolist())


@dataclass(frozen=True)
class Family:
    blocks: tuple[str, ...] | None  # transformer attributes holding the blocks; None: every module that
                                    # has an `attn` child (the generic route)
    attn: str                       # attention module attribute of a block (self-attention only)
    hook_name: str                  # global the processor's __call__ uses for attention:
                                    # dispatch_attention_fn ([B, N, H, D]) or F (F.sdpa, [B, H, N, D])
    text_first: bool | None         # None: no text in self-attention
    timestep_arg: str = "timestep"
    text_valid: Callable | None = None  # get(forward arg name) -> valid text tokens per batch element
    generic: bool = False           # checked at every call: video tokens only, no mask


FAMILIES = {
    "HunyuanVideoTransformer3DModel": Family(("transformer_blocks", "single_transformer_blocks"), "attn",
                                             "dispatch_attention_fn", False, text_valid=_valid_from_mask),
    "HunyuanVideo15Transformer3DModel": Family(("transformer_blocks",), "attn", "dispatch_attention_fn", False,
                                               text_valid=_valid_hunyuan15),
    "WanTransformer3DModel": Family(("blocks",), "attn1", "dispatch_attention_fn", None),
    "CogVideoXTransformer3DModel": Family(("transformer_blocks",), "attn1", "F", True),
}

_GENERIC_HINT = ("a transformer whose video self-attention calls diffusers' dispatch_attention_fn with only video "
                 "tokens in the sequence can use apply(..., self_attention='<attention attribute of its blocks>')")


def _refuse(what: str) -> str:
    return f"adaspa: {what}; supported families: {sorted(FAMILIES)}; {_GENERIC_HINT}"


class _Forward:
    """What the pre-hook learned about the current forward, shared by one transformer's processors."""
    video_tokens: int | None = None
    parallel = None  # diffusers' ContextParallelConfig when Ulysses is on (transformer.enable_parallelism)


# Context parallelism (diffusers' Ulysses) -----------------------------------------------------------
# diffusers splits the sequence over the ranks of its ulysses mesh (the model's cp plan) and, inside
# dispatch_attention_fn, exchanges sequence for heads with an all-to-all before attention and back
# after. adaspa needs whole sequences (block patterns, text blocks), so its wrapper makes the same
# exchange with diffusers' own all-to-all helper and runs adaspa_attention on this rank's heads over
# the full sequence. Ring attention gives a rank only a slice of the keys at a time: refused.

def _ulysses_config(tr):
    """The ContextParallelConfig of a transformer under diffusers' context parallelism, None without;
    raises for what adaspa cannot run (ring attention, Ulysses Anything's padded heads)."""
    cp = getattr(getattr(tr, "_parallel_config", None), "context_parallel_config", None)
    if cp is None:
        return None
    if cp.ring_degree > 1:
        raise ValueError(f"adaspa: ring attention (ContextParallelConfig(ring_degree={cp.ring_degree})) is not "
                         "supported: each rank would see only a slice of the keys at a time, and AdaSpa selects "
                         "key blocks over the whole sequence; use ContextParallelConfig(ulysses_degree=N)")
    if type(tr).__name__ in _NO_CP:
        raise ValueError(f"adaspa: {type(tr).__name__} under context parallelism is not supported: "
                         f"{_NO_CP[type(tr).__name__]}")
    if cp.ulysses_anything:
        raise ValueError("adaspa: ContextParallelConfig(ulysses_anything=True) is not supported (it pads heads "
                         "and sequences); use ulysses_degree dividing the number of heads and the sequence")
    return cp if cp.ulysses_degree > 1 else None


def _check_heads(heads: int, cp, where: str) -> None:
    if heads % cp.ulysses_degree:
        raise ValueError(f"adaspa: {where} has {heads} attention heads, not divisible by "
                         f"ulysses_degree={cp.ulysses_degree}: Ulysses gives every rank the same number of heads")


def _joint_order(world: int, s_local: int, t_local: int, text_first: bool, device) -> torch.Tensor:
    """After the all-to-all the sequence is the ranks' local sequences one after the other, each
    [text_r | video_r] (or [video_r | text_r]); the index that puts it in one process's order,
    [text | video] (or [video | text]), where the text and the video are each their ranks' chunks
    in rank order."""
    base = torch.arange(world, device=device)[:, None] * s_local
    v_local = s_local - t_local
    text = base + (0 if text_first else v_local) + torch.arange(t_local, device=device)
    video = base + (t_local if text_first else 0) + torch.arange(v_local, device=device)
    return torch.cat([text.flatten(), video.flatten()] if text_first else [video.flatten(), text.flatten()])


def _inverse(order: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))


def _cp_plans() -> dict:
    """Context-parallel plans (diffusers' ContextParallelModelPlan) for the families whose diffusers
    0.42.1 class has none: split the video and text streams at the first block, the video RoPE
    table at its output, gather the video at proj_out. Each rank then holds [video_r | text_r]
    (HunyuanVideo) or [text_r | video_r] (CogVideoX); the wrapper puts the gathered sequence back in
    one process's order before AdaSpa (_joint_order). For adaspa's processors only: diffusers' own
    processors of these families would attend with the wrong mask (HunyuanVideo) or without the
    all-to-all (CogVideoX calls F.scaled_dot_product_attention)."""
    from diffusers.models._modeling_parallel import ContextParallelInput as In, ContextParallelOutput as Out
    stream = In(split_dim=1, expected_dims=3)
    streams = {"hidden_states": stream, "encoder_hidden_states": stream}
    rope = In(split_dim=0, expected_dims=2, split_output=True)
    return {
        "HunyuanVideoTransformer3DModel": {"rope": {0: rope, 1: rope}, "transformer_blocks.0": streams,
                                           "proj_out": Out(gather_dim=1, expected_dims=3)},
        # the pipeline passes the RoPE table to forward, which hands it to every block
        "CogVideoXTransformer3DModel": {
            "transformer_blocks.*": {"image_rotary_emb": [In(split_dim=0, expected_dims=2)] * 2},
            "transformer_blocks.0": streams, "proj_out": Out(gather_dim=1, expected_dims=3)},
    }


CP_PLANS = {"HunyuanVideoTransformer3DModel", "CogVideoXTransformer3DModel"}  # classes cp_plan() adds a plan for
_NO_CP = {"HunyuanVideo15Transformer3DModel": "its text segment (image + ByT5 + MLLM tokens) rarely divides by the "
          "degree and its processor builds the attention mask over the whole sequence"}


def cp_plan(transformer) -> dict:
    """The context-parallel plan to pass to transformer.enable_parallelism(config=..., cp_plan=...):
    diffusers' own where the class has one (Wan, LTX-Video, ...), adaspa's for HunyuanVideo and
    CogVideoX (see _cp_plans)."""
    name = type(transformer).__name__
    if name in _NO_CP:
        raise ValueError(f"adaspa: {name} under context parallelism is not supported: {_NO_CP[name]}")
    own = getattr(type(transformer), "_cp_plan", None)
    if own is not None:
        return own
    plans = _cp_plans()
    if name not in plans:
        raise ValueError(f"adaspa: no context-parallel plan for {name} (diffusers has none, nor has adaspa; "
                         f"adaspa adds plans for {sorted(CP_PLANS)})")
    return plans[name]


@dataclass
class _UlyssesRecord:
    """Per layer and CFG branch under Ulysses: the head order (None: diffusers' contiguous split) and
    the work per head measured at the last search, with the imbalance it gives in the contiguous
    split (before) and in the order used from then on (after)."""
    order: torch.Tensor | None = None
    work: torch.Tensor | None = None
    before: float = 1.0
    after: float = 1.0


def _states(st: LayerState) -> list[LayerState]:
    return [st, *st.sub.values()]


def _migrate(state: LayerState, shard: HeadShard, new_order: torch.Tensor) -> None:
    """Move the cached patterns to the ranks that hold each head in new_order (all_gather over the
    ulysses group, keep this rank's new heads)."""
    hl = new_order.numel() // shard.world
    take = _inverse(shard.order)[new_order[shard.rank * hl:(shard.rank + 1) * hl]]
    for st in _states(state):
        for name, dim in (("lse", 1), ("mask", 1), ("idx", 1), ("keep", 0), ("recall", 0)):
            t = getattr(st, name)
            if t is not None:
                setattr(st, name, shard.gather(t, dim).index_select(dim, take.to(t.device)).contiguous())


def _on_original(name: str) -> property:
    """A processor attribute read from and written to the wrapped original processor."""
    return property(lambda self: getattr(self.original, name), lambda self, value: setattr(self.original, name, value))


class AdaSpaProcessor:
    """Runs the original processor's code with its attention call sent to AdaSpa."""

    def __init__(self, original, session: AdaSpaSession, key, family: Family, forward: _Forward):
        self.original = original
        self.session = session
        self.key = key
        self.family = family
        self.forward = forward
        self.states = session.layer_states(key)
        self.state = branch_state(self.states, 0)  # this forward's state, set by the pre-hook
        fn = type(original).__call__
        if family.hook_name not in getattr(getattr(fn, "__code__", None), "co_names", ()):
            if family.generic:
                raise TypeError(_refuse(f"{type(original).__name__}.__call__ does not call '{family.hook_name}', "
                                        "so the generic route cannot reroute its attention"))
            raise RuntimeError(
                f"adaspa: {type(original).__name__}.__call__ no longer calls '{family.hook_name}'; this diffusers "
                "version is not supported by adaspa_ext.integrations.diffusers (pinned: 0.42.1)")
        g = dict(fn.__globals__)
        if family.hook_name == "F":  # CogVideoX calls F.scaled_dot_product_attention
            proxy = types.ModuleType("adaspa_functional")
            proxy.__dict__.update(F.__dict__)
            proxy.scaled_dot_product_attention = self._sdpa
            g["F"] = proxy
        else:
            g[family.hook_name] = self._dispatch
        # No __name__ in the copy: torch.compile (2.11) resolves a global of a function whose globals carry a
        # module name through that module (diffusers' own dispatch_attention_fn here), and its guards fail;
        # without one it keeps a reference to this dict itself.
        g.pop("__name__", None)
        self._call = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
        self._text_len = 0
        self.balance = False             # apply(..., balance_heads=True)
        self.ulysses: dict[int, _UlyssesRecord] = {}  # per CFG branch

    # diffusers' enable_parallelism reads and sets these on every processor; the original keeps them,
    # so either order of apply() and enable_parallelism() works and remove() leaves them in place.
    _parallel_config = _on_original("_parallel_config")
    _attention_backend = _on_original("_attention_backend")

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if self.family.generic and encoder_hidden_states is not None:
            raise ValueError(_refuse(f"{type(self.original).__name__} (layer {self.key}) is given encoder_hidden_states: "
                                     "text or other tokens join this attention, which the generic route does not handle"))
        self._text_len = 0 if encoder_hidden_states is None or self.family.text_first is None \
            else encoder_hidden_states.shape[1]
        return self._call(self.original, attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    def _attend(self, q, k, v):  # [B, H, N, D]
        text = TextSpec(self._text_len, bool(self.family.text_first)) if self._text_len else TextSpec()
        # The pre-hook picked this branch's state outside the compiled region: compiled blocks share
        # their graphs across layers and CFG branches (no guard on the branch or the list's length).
        return adaspa_attention(q, k, v, self.state, self.session, text, self.key)

    def _check_generic(self, query, key, attn_mask):
        expected = self.forward.video_tokens
        problem = ("it passes an attention mask" if attn_mask is not None else
                   f"keys ({key.shape[1]}) and queries ({query.shape[1]}) differ in length (cross-attention)"
                   if key.shape[1] != query.shape[1] else
                   "the number of video tokens of the input is unknown (hidden_states neither [B, N, C] nor "
                   "[B, C, F, H, W] / [B, F, C, H, W] with the config's in_channels)" if expected is None else
                   f"its sequence has {query.shape[1]} tokens, the input {expected} video tokens (other tokens "
                   "join the sequence)" if query.shape[1] != expected else None)
        if problem:
            raise ValueError(_refuse(f"layer {self.key}: {problem}"))

    def _attend_ulysses(self, q, k, v, attn_mask):
        """q, k, v [B, N / world, H, D], this rank's slice of the sequence; returns the same. The
        all-to-all is diffusers' (the one its templated Ulysses attention makes)."""
        from diffusers.models.attention_dispatch import _all_to_all_dim_exchange
        cp = self.forward.parallel
        world, h = cp.ulysses_degree, q.shape[2]
        _check_heads(h, cp, f"layer {self.key}")
        group, rank = cp._ulysses_mesh.get_group(), cp._ulysses_local_rank
        rec = self.ulysses.setdefault(self.session.branch, _UlyssesRecord())
        order = rec.order
        if order is not None:  # rebalanced heads: rank r gets order[r * H / world : ...]
            q, k, v = (x.index_select(2, order.to(x.device)) for x in (q, k, v))
        s_local = q.shape[1]
        q, k, v = (_all_to_all_dim_exchange(x, 2, 1, group) for x in (q, k, v))  # [B, N, H / world, D]
        seq = None
        if self._text_len:  # text rows and text key blocks where one process has them
            seq = _joint_order(world, s_local, self._text_len, bool(self.family.text_first), q.device)
            q, k, v = (x.index_select(1, seq) for x in (q, k, v))
        if self.family.generic:
            self._check_generic(q, k, attn_mask)
        text = TextSpec(world * self._text_len, bool(self.family.text_first)) if self._text_len else TextSpec()
        shard = HeadShard(group, rank, world, order if order is not None else torch.arange(h))
        before = [id(st.mask) for st in _states(self.state)]
        out = adaspa_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.state, self.session,
                               text, self.key, shard).transpose(1, 2)
        if seq is not None:
            out = out.index_select(1, _inverse(seq))
        out = _all_to_all_dim_exchange(out.contiguous(), 1, 2, group)  # [B, N / world, H, D]
        if order is not None:
            out = out.index_select(2, _inverse(order).to(out.device))
        if [id(st.mask) for st in _states(self.state)] != before:  # a search made a new pattern
            self._after_search(rec, shard)
        return out

    @torch.compiler.disable
    def _after_search(self, rec: _UlyssesRecord, shard: HeadShard) -> None:
        """Work per head of the new pattern, gathered over the ranks; with balance_heads, the head
        order that evens out the ranks' work for the sparse steps until the next search (the cached
        patterns move with their heads)."""
        rec.work = shard.gather_global(head_work(self.state, self.session.config.block_size))
        rec.before = work_imbalance(rec.work, shard.world)
        if self.balance:
            new = balanced_head_order(rec.work, shard.world)
            if not torch.equal(new, shard.order.cpu()):
                _migrate(self.state, shard, new)
            rec.order = None if torch.equal(new, torch.arange(new.numel())) else new
        rec.after = work_imbalance(rec.work, shard.world, rec.order)

    def _dispatch(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        # diffusers' dispatch_attention_fn: [B, N, H, D] in and out. attn_mask is HunyuanVideo's
        # text padding mask, which the session already holds as valid text lengths.
        if self.forward.parallel is not None:
            return self._attend_ulysses(query, key, value, attn_mask)
        if self.family.generic:
            self._check_generic(query, key, attn_mask)
        out = self._attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
        return out.transpose(1, 2)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        if attn_mask is not None:  # CogVideoX passes none; keep exact semantics otherwise
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, **kwargs)
        if self.forward.parallel is not None:  # [B, H, N, D] views of the exchange's [B, N, H, D]
            qs, ks, vs = (x.transpose(1, 2) for x in (query, key, value))
            return self._attend_ulysses(qs, ks, vs, None).transpose(1, 2)
        return self._attend(query, key, value)


@functools.lru_cache(maxsize=None)
def _processor_class(original_type: type) -> type:
    """AdaSpaProcessor with the original's __call__ signature: diffusers' Attention.forward
    drops keyword arguments (image_rotary_emb, ...) that the processor signature lacks."""
    call = functools.wraps(original_type.__call__)(AdaSpaProcessor.__call__)
    return type(f"AdaSpa{original_type.__name__}", (AdaSpaProcessor,), {"__call__": call})


def _transformers(obj, generic: bool):
    if isinstance(obj, torch.nn.Module) and (type(obj).__name__ in FAMILIES or generic):
        return [obj]
    found = [getattr(obj, n, None) for n in ("transformer", "transformer_2")]
    found = [t for t in found if isinstance(t, torch.nn.Module)]
    if not found:
        raise TypeError(_refuse(f"expected a diffusers pipeline or transformer, got {type(obj).__name__}"))
    for t in found:
        if type(t).__name__ not in FAMILIES and not generic:
            raise TypeError(_refuse(f"unsupported transformer {type(t).__name__}"))
    return found


def _attention_modules(tr, fam: Family) -> list:
    if fam.blocks is not None:
        return [getattr(block, fam.attn) for name in fam.blocks for block in getattr(tr, name, [])]
    mods = [getattr(m, fam.attn) for _, m in tr.named_modules()
            if isinstance(getattr(m, fam.attn, None), torch.nn.Module) and hasattr(getattr(m, fam.attn), "processor")]
    if not mods:
        raise TypeError(_refuse(f"{type(tr).__name__} has no module with an attention child '{fam.attn}'"))
    return mods


def _video_tokens(tr, x) -> int | None:
    """Video tokens of a transformer input: N of [B, N, C], or F H W over the config's patch sizes
    of [B, C, F, H, W] / [B, F, C, H, W]; None when neither fits."""
    if not isinstance(x, torch.Tensor):
        return None
    if x.ndim == 3:
        return x.shape[1]
    cfg = getattr(tr, "config", None)
    c = getattr(cfg, "in_channels", None)
    if x.ndim != 5 or c is None:
        return None
    if x.shape[1] == c:
        f, h, w = x.shape[2:]
    elif x.shape[2] == c:
        f, h, w = x.shape[1], x.shape[3], x.shape[4]
    else:
        return None
    p = getattr(cfg, "patch_size", 1)
    pt, ph, pw = tuple(p) if isinstance(p, (tuple, list)) else (getattr(cfg, "patch_size_t", None) or 1, p, p)
    return (f // pt) * (h // ph) * (w // pw)


class _Steps:
    """Step / branch counting from a pipeline's scheduler (mode 'scheduler'), from timesteps
    ('timestep'), or by the caller ('manual')."""

    def __init__(self, mode: str):
        self.mode, self.step, self.branch = mode, 0, 0

    def track(self, scheduler, session: AdaSpaSession):
        step, set_timesteps = scheduler.step, scheduler.set_timesteps

        @functools.wraps(step)  # keeps the signature: pipelines inspect it
        def step_(*args, **kwargs):
            out = step(*args, **kwargs)
            self.step, self.branch = self.step + 1, 0
            return out

        @functools.wraps(set_timesteps)
        def set_timesteps_(*args, **kwargs):
            session.reset()
            self.step = self.branch = 0
            return set_timesteps(*args, **kwargs)

        scheduler.step, scheduler.set_timesteps = step_, set_timesteps_
        return scheduler


def _make_pre_hook(session: AdaSpaSession, family: Family, forward, steps: _Steps, seen: _Forward, procs: list):
    # the class's forward: diffusers' hooks (context parallelism) replace the instance's with (*args, **kwargs)
    params = list(inspect.signature(forward).parameters)[1:]

    def arg(name, args, kwargs):
        if name in kwargs:
            return kwargs[name]
        i = params.index(name) if name in params else -1
        return args[i] if 0 <= i < len(args) else None

    @torch.compiler.disable
    def hook(module, args, kwargs):
        get = functools.partial(arg, args=args, kwargs=kwargs)
        if steps.mode == "scheduler":
            session.set_step(steps.step, steps.branch)
            steps.branch += 1
        elif steps.mode == "timestep":
            t = get(family.timestep_arg)
            if t is not None:  # per-token timesteps (Wan 2.2 TI2V): the largest is the step's
                session.begin_forward(float(t.max()) if isinstance(t, torch.Tensor) else float(t))
        for p in procs:
            p.state = branch_state(p.states, session.branch)
        session.text_valid = family.text_valid(get) if family.text_valid else None
        seen.parallel = _ulysses_config(module)
        if family.generic:
            seen.video_tokens = _video_tokens(module, get("hidden_states"))
        return None

    return hook


def apply(pipe_or_transformer, config: AdaSpaConfig | None = None, *, self_attention: str | None = None,
          steps: str = "auto", balance_heads: bool = False) -> AdaSpaSession:
    """Wrap the self-attention processors of the pipeline's transformer(s) (both experts of Wan
    2.2 A14B) and start tracking steps. Returns the session (phase log, cache size, reset()).

    self_attention: for a transformer of no known family, the attribute of its blocks that holds
        the video self-attention (e.g. "attn1"): the generic route (see the module docstring).
    steps: "auto" (the pipeline's scheduler when there is one, else the timestep), "scheduler",
        "timestep", or "manual" (the caller calls session.set_step(step, branch) before each forward).
    balance_heads: under diffusers' Ulysses context parallelism, reorder the heads over the ranks
        after each search so that every rank gets the same kept blocks (the head-adaptive tiers
        differ up to 3x per head); outputs are unchanged. See ulysses_imbalance().

    Context parallelism: turn on diffusers' own (ContextParallelConfig(ulysses_degree=N),
    transformer.enable_parallelism(config=..., cp_plan=cp_plan(transformer))) before or after
    apply; ring attention is refused.
    """
    if steps not in ("auto", "scheduler", "timestep", "manual"):
        raise ValueError(f"adaspa: steps must be 'auto', 'scheduler', 'timestep' or 'manual', got {steps!r}")
    scheduler = getattr(pipe_or_transformer, "scheduler", None)
    has_scheduler = callable(getattr(scheduler, "step", None)) and callable(getattr(scheduler, "set_timesteps", None))
    if steps == "scheduler" and not has_scheduler:
        raise ValueError("adaspa: steps='scheduler' needs a pipeline with a scheduler")
    if steps == "auto":
        steps = "scheduler" if has_scheduler else "timestep"
    transformers = _transformers(pipe_or_transformer, self_attention is not None)
    for tr in transformers:
        if hasattr(tr, "_adaspa"):
            raise RuntimeError("adaspa: already applied to this transformer; call remove() first")
    session = AdaSpaSession(config or AdaSpaConfig())
    tracker = _Steps(steps)
    plans = []  # every processor is built (and checked) before anything of the user's changes
    for ti, tr in enumerate(transformers):
        name = type(tr).__name__
        if name in FAMILIES:
            fam = FAMILIES[name]
            if self_attention is not None and self_attention != fam.attn:
                raise ValueError(f"adaspa: {name} is a known family whose self-attention is '{fam.attn}', "
                                 f"not '{self_attention}'")
        else:
            fam = Family(None, self_attention, "dispatch_attention_fn", None, generic=True)
        seen = _Forward()
        attns = _attention_modules(tr, fam)
        cp = _ulysses_config(tr)
        for li, attn in enumerate(attns):
            if cp is not None and hasattr(attn, "heads"):
                _check_heads(attn.heads, cp, f"{name} layer {li}")
        procs = [(attn, _processor_class(type(attn.processor))(attn.processor, session, (ti, li), fam, seen))
                 for li, attn in enumerate(attns)]
        plans.append((tr, fam, seen, procs))
    session.layer_count = sum(len(procs) for *_, procs in plans)
    session.weight_bytes = sum(p.numel() * p.element_size() for tr in transformers for p in tr.parameters())
    if steps == "scheduler":
        tracker.track(scheduler, session)
    for tr, fam, seen, procs in plans:
        originals = [(attn, attn.processor) for attn, _ in procs]
        for attn, proc in procs:
            attn.set_processor(proc)
        for _, p in procs:
            p.balance = balance_heads
        hook = _make_pre_hook(session, fam, type(tr).forward, tracker, seen, [p for _, p in procs])
        handle = tr.register_forward_pre_hook(hook, with_kwargs=True)
        tr._adaspa = (session, originals, handle, scheduler if steps == "scheduler" else None)
    return session


def remove(pipe_or_transformer) -> None:
    """Restore the original processors and scheduler, and drop the step hook."""
    for tr in _transformers(pipe_or_transformer, generic=True):
        if not hasattr(tr, "_adaspa"):
            continue
        _, originals, handle, scheduler = tr._adaspa
        for attn, proc in originals:
            attn.set_processor(proc)
        handle.remove()
        if scheduler is not None:  # the wrappers are instance attributes over the class's methods
            scheduler.__dict__.pop("step", None)
            scheduler.__dict__.pop("set_timesteps", None)
        del tr._adaspa


def ulysses_imbalance(pipe_or_transformer) -> dict:
    """Rank balance of the sparse steps under Ulysses, from the per-head kept-block counts of each
    layer's last search (head_work: (query block, key block) pairs a head visits; rank work: the sum
    over its heads; imbalance: max rank work / mean rank work, 1.0 = even).

    Returns {"layers": {(layer key, branch): (before, after)}, "before": mean, "after": mean,
    "before_max": max, "after_max": max}: before with diffusers' contiguous head split, after with
    the order in use (the same unless apply(..., balance_heads=True)). Empty before the first search
    or without context parallelism."""
    layers = {}
    for tr in _transformers(pipe_or_transformer, generic=True):
        if not hasattr(tr, "_adaspa"):
            continue
        for attn, _ in tr._adaspa[1]:
            proc = attn.processor
            for branch, rec in getattr(proc, "ulysses", {}).items():
                if rec.work is not None:
                    layers[(proc.key, branch)] = (rec.before, rec.after)
    if not layers:
        return {"layers": {}}
    before, after = zip(*layers.values())
    return {"layers": layers, "before": sum(before) / len(before), "after": sum(after) / len(after),
            "before_max": max(before), "after_max": max(after)}

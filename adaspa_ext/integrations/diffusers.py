"""One call to run AdaSpa inside diffusers' HunyuanVideo, Wan 2.1 / 2.2 and CogVideoX pipelines.

    import adaspa_ext
    from adaspa_ext.integrations import diffusers as adaspa_diffusers
    session = adaspa_diffusers.apply(pipe, adaspa_ext.AdaSpaConfig())   # or a transformer
    video = pipe(prompt, num_inference_steps=50).frames[0]
    adaspa_diffusers.remove(pipe)

How it hooks in, without subclassing anything of the user's:
  * every self-attention processor is wrapped; the wrapper runs diffusers' own processor code
    (projections, QK norms, RoPE) with its attention call rerouted to `adaspa_attention`;
  * a forward pre-hook on each transformer reads the timestep: a new value is the next
    denoising step, a repeated value the next CFG branch of the same step, a larger one a new
    generation (the pipelines' own loops need no change). HunyuanVideo's text padding mask is
    read there too, once per forward.
Pinned against diffusers 0.42.1: the wrapped processors must reference the names listed in
FAMILIES (checked at apply time, with a clear error otherwise).
"""
from __future__ import annotations

import functools
import inspect
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import AdaSpaConfig
from ..runtime import AdaSpaSession, TextSpec, adaspa_attention, branch_state

__all__ = ["apply", "remove", "FAMILIES"]


@dataclass(frozen=True)
class Family:
    blocks: tuple[str, ...]   # transformer attributes holding the blocks
    attn: str                 # attention module attribute of a block (self-attention only)
    hook_name: str            # global the processor's __call__ uses for attention:
                              # dispatch_attention_fn ([B, N, H, D]) or F (F.sdpa, [B, H, N, D])
    text_first: bool | None   # None: no text in self-attention
    timestep_arg: str = "timestep"
    text_mask_arg: str | None = None


FAMILIES = {
    "HunyuanVideoTransformer3DModel": Family(("transformer_blocks", "single_transformer_blocks"), "attn",
                                             "dispatch_attention_fn", False,
                                             text_mask_arg="encoder_attention_mask"),
    "WanTransformer3DModel": Family(("blocks",), "attn1", "dispatch_attention_fn", None),
    "CogVideoXTransformer3DModel": Family(("transformer_blocks",), "attn1", "F", True),
}


class AdaSpaProcessor:
    """Runs the original processor's code with its attention call sent to AdaSpa."""

    def __init__(self, original, session: AdaSpaSession, key, family: Family):
        self.original = original
        self.session = session
        self.key = key
        self.family = family
        self.states = session.layer_states(key)
        fn = type(original).__call__
        if family.hook_name not in fn.__code__.co_names:
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
        self._call = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
        self._text_len = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        self._text_len = 0 if encoder_hidden_states is None or self.family.text_first is None \
            else encoder_hidden_states.shape[1]
        return self._call(self.original, attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    def _attend(self, q, k, v):  # [B, H, N, D]
        text = TextSpec(self._text_len, bool(self.family.text_first)) if self._text_len else TextSpec()
        # The state comes from the list this processor holds, not a lookup by layer key, so
        # compiled blocks share their graphs.
        state = branch_state(self.states, self.session.branch)
        return adaspa_attention(q, k, v, state, self.session, text, self.key)

    def _dispatch(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        # diffusers' dispatch_attention_fn: [B, N, H, D] in and out. attn_mask is HunyuanVideo's
        # text padding mask, which the session already holds as valid text lengths.
        out = self._attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
        return out.transpose(1, 2)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        if attn_mask is not None:  # CogVideoX passes none; keep exact semantics otherwise
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, **kwargs)
        return self._attend(query, key, value)


@functools.lru_cache(maxsize=None)
def _processor_class(original_type: type) -> type:
    """AdaSpaProcessor with the original's __call__ signature: diffusers' Attention.forward
    drops keyword arguments (image_rotary_emb, ...) that the processor signature lacks."""
    call = functools.wraps(original_type.__call__)(AdaSpaProcessor.__call__)
    return type(f"AdaSpa{original_type.__name__}", (AdaSpaProcessor,), {"__call__": call})


def _transformers(obj):
    if isinstance(obj, torch.nn.Module) and type(obj).__name__ in FAMILIES:
        return [obj]
    found = [getattr(obj, n, None) for n in ("transformer", "transformer_2")]
    found = [t for t in found if t is not None]
    if not found:
        raise TypeError(f"adaspa: expected a diffusers pipeline or one of {sorted(FAMILIES)}, got {type(obj).__name__}")
    for t in found:
        if type(t).__name__ not in FAMILIES:
            raise TypeError(f"adaspa: unsupported transformer {type(t).__name__}; supported: {sorted(FAMILIES)}")
    return found


def _make_pre_hook(session: AdaSpaSession, family: Family, forward):
    params = list(inspect.signature(forward).parameters)

    def arg(name, args, kwargs):
        if name in kwargs:
            return kwargs[name]
        i = params.index(name) if name in params else -1
        return args[i] if 0 <= i < len(args) else None

    @torch.compiler.disable
    def hook(module, args, kwargs):
        t = arg(family.timestep_arg, args, kwargs)
        if t is not None:
            session.begin_forward(float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t))
        mask = arg(family.text_mask_arg, args, kwargs) if family.text_mask_arg else None
        session.text_valid = tuple(int(x) for x in mask.sum(dim=1).tolist()) if mask is not None else None
        return None

    return hook


def apply(pipe_or_transformer, config: AdaSpaConfig | None = None) -> AdaSpaSession:
    """Wrap the self-attention processors of the pipeline's transformer(s) (both experts of Wan
    2.2) and start tracking steps. Returns the session (phase log, cache size, reset())."""
    session = AdaSpaSession(config or AdaSpaConfig())
    for ti, tr in enumerate(_transformers(pipe_or_transformer)):
        if hasattr(tr, "_adaspa"):
            raise RuntimeError("adaspa: already applied to this transformer; call remove() first")
        fam = FAMILIES[type(tr).__name__]
        originals = []
        li = 0
        for blocks_name in fam.blocks:
            for block in getattr(tr, blocks_name, []):
                attn = getattr(block, fam.attn)
                originals.append((attn, attn.processor))
                attn.set_processor(_processor_class(type(attn.processor))(attn.processor, session, (ti, li), fam))
                li += 1
        handle = tr.register_forward_pre_hook(_make_pre_hook(session, fam, tr.forward), with_kwargs=True)
        tr._adaspa = (session, originals, handle)
    return session


def remove(pipe_or_transformer) -> None:
    """Restore the original processors and drop the step hook."""
    for tr in _transformers(pipe_or_transformer):
        if not hasattr(tr, "_adaspa"):
            continue
        _, originals, handle = tr._adaspa
        for attn, proc in originals:
            attn.set_processor(proc)
        handle.remove()
        del tr._adaspa

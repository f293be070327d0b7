"""End-to-end benchmark: full-size diffusers video transformers (random bf16 weights) over the
denoising loop, diffusers' default attention and the best dense attention against AdaSpa.

Usage:
  python benchmarks/bench_e2e.py [--models hunyuan-720p wan14b-720p wan1.3b-480p cogvideox1.5-720p]
      [--steps 50] [--sparsity 0.8] [--reps 1] [--compile | --compile-only] [--compile-backend inductor]
      [--full-loop wan1.3b-480p] [--lse-cache auto|on|off] [--json OUT] [--csv OUT] [--tiny]
  torchrun --nproc_per_node N benchmarks/bench_e2e.py --ulysses N [--balance-heads] [--single-json 1GPU.json] ...

Per model (a preset of adaspa_ext.presets with a ModelSpec): the transformer is built from
diffusers' own class at its published configuration directly on the GPU (module created under
`torch.device("cuda")` in float32, then cast to bf16 as from_pretrained does, keeping the class's
fp32 modules), with random text embeddings of the real shapes and the timesteps of the pipeline's
scheduler. One denoising step is every transformer forward the pipeline makes for it: one
(HunyuanVideo, guidance embedded), two (Wan, HunyuanVideo 1.5: cond and uncond) or one of batch 2
(CogVideoX). Inputs stay fixed across steps: with random weights speed depends on the shapes only.

Measured, with CUDA events, one step each (median of --reps):
  dense_default  diffusers' default attention as the pipeline runs it (torch SDPA, its own
                 backend choice, HunyuanVideo's text padding as a mask);
  dense_best     the best dense attention for the same result: AdaSpa's dense phase (cuDNN first
                 in SDPA's priority list for every attention of the model, padded text keys
                 dropped instead of masked); AdaSpa's warm-up steps are these;
  search_fused, sparse, search_cached   AdaSpa's other phases (the session's step set by hand).
The 50-step transformer time is composed from the per-phase steps and the schedule's phase count
(--full-loop runs the real loop for the named models through the scheduler-driven step tracking
and reports the difference). Attention's share: CUDA events around every attention call in eager
mode. Peak memory: torch.cuda.max_memory_allocated over each phase. A warm-up runs every
configuration once before it is timed (eager: at one latent frame's worth of tokens, which loads
the same kernels; compiled: at full size, which compiles the graphs).

Expected time on an H200 (eager, --reps 1, build included): hunyuan-720p ~4 min, wan14b-720p ~4
min, cogvideox1.5-720p ~3 min, wan1.3b-480p ~1 min (+2 min with --full-loop); --compile roughly
doubles each. --tiny runs CPU-sized variants of the same classes (the tests use it).

--ulysses N (under torchrun, N processes, NCCL on GPUs, gloo on the CPU): every configuration runs
under diffusers' own Ulysses context parallelism (ContextParallelConfig(ulysses_degree=N),
enable_parallelism with adaspa_diffusers.cp_plan); dense_default / dense_best are then dense
attention on the same N GPUs, so x_best is the speedup over dense on the same GPUs. --single-json
names the JSON of a one-GPU run of the same models: x_1gpu is then its AdaSpa total over this one.
Rank 0 prints and writes; the row also carries the rank imbalance of the sparse steps
(ulysses_imbalance, before / after --balance-heads).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import types
from contextlib import nullcontext

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

from adaspa_ext.config import AdaSpaConfig  # noqa: E402
from adaspa_ext.integrations import diffusers as AD  # noqa: E402
from adaspa_ext.presets import E2E_DEFAULT, PRESETS, ModelSpec  # noqa: E402
from adaspa_ext.runtime import kept_share  # noqa: E402

MODELS = [n for n, p in PRESETS.items() if p.model is not None]
PHASES = ["dense", "search_fused", "sparse", "search_cached"]
GUIDANCE = 6.0  # HunyuanVideo's embedded guidance (pipeline default), also the CFG scale of the loop


# --------------------------------------------------------------------------------------------
# the schedule and the composed total


# transformer blocks compile_repeated_blocks compiles, for classes whose diffusers release does not
# list them in `_repeated_blocks` (the others use diffusers' own list)
REPEATED_BLOCKS = {"CogVideoXTransformer3DModel": ["CogVideoXBlock"]}
LSE_CACHE = {"auto": None, "on": True, "off": False}  # --lse-cache -> AdaSpaConfig.cache_lse


def schedule_config(steps: int, sparsity: float, cache_lse: bool | None = None) -> AdaSpaConfig:
    """The paper's schedule (warm-up 10, searches at 10 and 30 of 50) scaled to `steps`."""
    if steps == 50:
        return AdaSpaConfig(sparsity=sparsity, cache_lse=cache_lse)
    first, second = max(1, round(0.2 * steps)), round(0.6 * steps)
    searches = (first, second) if first < second < steps else (first,)
    return AdaSpaConfig(sparsity=sparsity, num_steps=steps, warmup_steps=first, search_steps=searches,
                        cache_lse=cache_lse)


def phase_counts(cfg: AdaSpaConfig, lse_cached: bool = True) -> dict[str, int]:
    """Steps of each phase over a generation of cfg.num_steps steps, for a transformer whose every
    layer runs at every step (the first search is the fused one, later ones LSE-cached, or fused
    too when the LSE is not cached: lse_cached, what the session chose for cfg.cache_lse)."""
    counts = dict.fromkeys(PHASES, 0)
    for step in range(cfg.num_steps):
        p = cfg.schedule_phase(step)
        if p == "search":
            p = "search_fused" if step == cfg.search_steps[0] or not lse_cached else "search_cached"
        counts[p] += 1
    return counts


def compose(step_ms: dict[str, float], counts: dict[str, int]) -> float:
    """Milliseconds of a whole generation from per-phase step times."""
    return sum(n * step_ms[p] for p, n in counts.items() if n)


def log_counts(session, forwards_per_step: int) -> dict[str, int]:
    """Steps of each phase in a session's log (every layer of a step in one phase: checked)."""
    by_step: dict[int, set] = {}
    for step, _, _, phase in session.log:
        by_step.setdefault(step, set()).add(phase)
    counts = dict.fromkeys(PHASES, 0)
    for step, phases in sorted(by_step.items()):
        if len(phases) != 1:
            raise AssertionError(f"step {step} mixes phases {phases}")
        counts[phases.pop()] += 1
    return counts


# --------------------------------------------------------------------------------------------
# models and their inputs


def cast_like_from_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Floating parameters and persistent buffers to dtype, except those under the class's
    _keep_in_fp32_modules (diffusers' from_pretrained(torch_dtype=...) rule); non-persistent
    buffers (RoPE tables) keep the dtype they were built in."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    persistent = set(model.state_dict().keys())
    for mname, mod in model.named_modules():
        for kind in ("_parameters", "_buffers"):
            for name, t in list(getattr(mod, kind).items()):
                full = f"{mname}.{name}" if mname else name
                if t is None or not t.is_floating_point() or full not in persistent:
                    continue
                if any(k in full.split(".") for k in keep):
                    continue
                if kind == "_parameters":
                    t.data = t.data.to(dtype)
                else:
                    mod._buffers[name] = t.to(dtype)


def build_transformer(spec: ModelSpec, device, dtype) -> torch.nn.Module:
    """The diffusers class at spec.config, random weights created on `device` (no CPU init; not meta:
    buffers such as RoPE tables are computed at construction)."""
    import diffusers
    cls = getattr(diffusers, spec.cls)
    with torch.device(device):
        model = cls(**spec.config)
    cast_like_from_pretrained(model, dtype)
    return model.eval().requires_grad_(False)


def make_scheduler(spec: ModelSpec):
    import diffusers
    name, kwargs = spec.scheduler
    return getattr(diffusers, name)(**kwargs)


def set_timesteps(scheduler, spec: ModelSpec, steps: int, device):
    """scheduler.set_timesteps as the spec's pipeline calls it; returns the timesteps."""
    import numpy as np
    if spec.sigmas:
        scheduler.set_timesteps(sigmas=list(np.linspace(1.0, 0.0, steps + 1)[:-1]), device=device)
    else:
        scheduler.set_timesteps(steps, device=device)
    return scheduler.timesteps


def video_tokens(spec: ModelSpec) -> int:
    c = spec.config
    _, f, h, w = spec.latent
    p = c.get("patch_size", 1)
    pt, ph, pw = tuple(p) if isinstance(p, (tuple, list)) else (c.get("patch_size_t") or 1, p, p)
    return (f // pt) * (h // ph) * (w // pw)


def attention_tokens(spec: ModelSpec) -> int:
    """Tokens of one self-attention sequence: video, plus the text for families that join it."""
    text_joins = AD.FAMILIES[spec.cls].text_first is not None
    return video_tokens(spec) + (sum(n for n, _ in spec.text) if text_joins else 0)


def cogvideox_rotary(model, spec: ModelSpec, device):
    """CogVideoXPipeline._prepare_rotary_positional_embeddings for CogVideoX1.5 (patch_size_t set) at
    the spec's latent size: the pipeline method needs a pipeline object, this is its arithmetic."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    c = model.config
    if c.patch_size_t is None:
        raise ValueError("bench_e2e builds CogVideoX1.5 inputs only (patch_size_t set)")
    _, f, h, w = spec.latent  # latent size = pixels / vae_scale_factor_spatial
    return get_3d_rotary_pos_embed(c.attention_head_dim, None, (h // c.patch_size, w // c.patch_size),
                                   (f + c.patch_size_t - 1) // c.patch_size_t, grid_type="slice",
                                   max_size=(c.sample_height // c.patch_size, c.sample_width // c.patch_size),
                                   device=device)


class Inputs:
    """The transformer kwargs of each forward of one denoising step (without the timestep), and
    the timestep tensor each forward gets."""

    def __init__(self, spec: ModelSpec, model, device, dtype, seed: int = 0, frames: int | None = None):
        g = torch.Generator().manual_seed(seed)
        rnd = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
        self.spec = spec
        self.batch = 2 if spec.cfg == "batched" else 1
        c, f, h, w = spec.latent
        f = frames or f
        self.latent_shape = (c, f, h, w)
        b = self.batch

        def mask(n, valid):
            m = torch.zeros(b, n, dtype=torch.int64, device=device)
            m[:, :valid] = 1
            return m

        branches = 2 if spec.cfg == "separate" else 1
        self.forwards = []
        for br in range(branches):
            text = [rnd(b, n, d) for n, d in spec.text]
            if spec.cls == "HunyuanVideoTransformer3DModel":
                kw = dict(hidden_states=rnd(b, c, f, h, w), encoder_hidden_states=text[0],
                          encoder_attention_mask=mask(spec.text[0][0], spec.text_valid[0]),
                          pooled_projections=rnd(b, model.config.pooled_projection_dim),
                          guidance=torch.full((b,), GUIDANCE * 1000.0, device=device, dtype=dtype))
            elif spec.cls == "HunyuanVideo15Transformer3DModel":
                kw = dict(hidden_states=rnd(b, c, f, h, w), encoder_hidden_states=text[0],
                          encoder_attention_mask=mask(spec.text[0][0], spec.text_valid[0]),
                          encoder_hidden_states_2=text[1],
                          encoder_attention_mask_2=mask(spec.text[1][0], spec.text_valid[1]),
                          image_embeds=torch.zeros_like(text[2]))  # text-to-video: zero image embeddings
            elif spec.cls == "WanTransformer3DModel":
                text[0][:, spec.text_valid[0]:] = 0  # the pipeline zero-pads the UMT5 embeddings to 512
                kw = dict(hidden_states=rnd(b, c, f, h, w), encoder_hidden_states=text[0])
            elif spec.cls == "CogVideoXTransformer3DModel":
                kw = dict(hidden_states=rnd(b, f, c, h, w), encoder_hidden_states=text[0],
                          image_rotary_emb=cogvideox_rotary(model, dataclass_replace(spec, latent=(c, f, h, w)), device))
            else:
                raise ValueError(f"bench_e2e has no input builder for {spec.cls}")
            if br == 1:  # the uncond branch sees the same video latents
                kw["hidden_states"] = self.forwards[0]["hidden_states"]
            self.forwards.append(kw)
        self.tokens_per_timestep = video_tokens(dataclass_replace(spec, latent=(c, f, h, w)))
        self.timestep_dtype = {"HunyuanVideoTransformer3DModel": torch.float32,     # latents.dtype (fp32)
                               "HunyuanVideo15Transformer3DModel": dtype}.get(spec.cls)  # the model's dtype
        self.device = device

    def timestep(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device)
        if self.timestep_dtype is not None:
            t = t.to(self.timestep_dtype)
        if self.spec.per_token_timestep:  # Wan 2.2 TI2V: (mask * t) per token, mask all ones for t2v
            return t.reshape(1, 1).expand(self.batch, self.tokens_per_timestep)
        return t.reshape(1).expand(self.batch)


def dataclass_replace(spec, **kw):
    import dataclasses
    return dataclasses.replace(spec, **kw)


# --------------------------------------------------------------------------------------------
# timing


class Timer:
    """Milliseconds between start() and stop(): CUDA events on a GPU, the host clock on the CPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def start(self):
        if self.cuda:
            self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.b.record()
            self.b.synchronize()
            return self.a.elapsed_time(self.b)
        return (time.perf_counter() - self.t) * 1e3


class AttentionTimer:
    """Wraps the integration's adaspa_attention: events around every attention call (eager only)."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.orig = AD.adaspa_attention
        self.spans = []

    def __call__(self, *args, **kwargs):
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = self.orig(*args, **kwargs)
            b.record()
            self.spans.append((a, b))
        else:
            t = time.perf_counter()
            out = self.orig(*args, **kwargs)
            self.spans.append((t, time.perf_counter()))
        return out

    def take_ms(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            ms = sum(a.elapsed_time(b) for a, b in self.spans)
        else:
            ms = sum(b - a for a, b in self.spans) * 1e3
        self.spans = []
        return ms

    def __enter__(self):
        AD.adaspa_attention = self
        return self

    def __exit__(self, *exc):
        AD.adaspa_attention = self.orig


def best_dense_context(device):
    """cuDNN first in SDPA's priority list (then flash, efficient, math) on a GPU."""
    if torch.device(device).type != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH], set_priority=True)


def peak_reset(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def run_step(model, inputs: Inputs, t, session=None, step: int | None = None):
    """Every forward of one denoising step; with a session in manual mode, each forward is set to
    `step` and its CFG branch first. Returns the outputs."""
    outs = []
    for branch, kw in enumerate(inputs.forwards):
        if session is not None and step is not None:
            session.set_step(step, branch)
        outs.append(model(**kw, timestep=inputs.timestep(t), return_dict=False)[0])
    return outs


# --------------------------------------------------------------------------------------------


def measure(model, spec, inputs, small, timesteps, cfg, device, reps, compiled, full_loop, balance_heads=False):
    """One mode (eager or compiled) of one model: every configuration warmed up, then timed."""
    timer = Timer(device)
    res = {"step_ms": {}, "attn_ms": {}, "peak_gib": {}}
    s0 = cfg.search_steps[0]
    cached = cfg.search_steps[1] if len(cfg.search_steps) > 1 and cfg.cache_lse is not False else None
    phase_step = {"dense": 0, "search_fused": s0, "sparse": s0 + 1, "search_cached": cached}
    warm = small if not compiled else inputs

    def timed(fn, before=None):
        times = []
        for _ in range(reps):
            if before:
                before()
            timer.start()
            fn()
            times.append(timer.stop())
        return statistics.median(times)

    # 1. diffusers' default attention
    with torch.inference_mode():
        run_step(model, warm, timesteps[0])
        peak_reset(device)
        last = {}
        res["step_ms"]["dense_default"] = timed(lambda: last.update(outs=run_step(model, inputs, timesteps[0])))
        res["peak_gib"]["dense_default"] = peak_gib(device)
        res["finite"] = all(bool(torch.isfinite(o).all()) for o in last.pop("outs"))

    # 2. AdaSpa, phase by phase (its dense phase is the best dense baseline)
    if compiled:
        torch._dynamo.reset()  # new processors: compile afresh rather than recompile on guard failures
    session = AD.apply(model, cfg, steps="manual", balance_heads=balance_heads)
    attn = AttentionTimer(device) if not compiled else None
    try:
        with torch.inference_mode(), best_dense_context(device), (attn or nullcontext()):
            for phase in PHASES:  # warm-up: every phase once
                if phase_step[phase] is None:
                    continue
                if phase == "search_fused":
                    session.reset()
                run_step(model, warm, timesteps[phase_step[phase]], session, phase_step[phase])
            session.reset()
            if attn:
                attn.take_ms()
            for phase in PHASES:
                st = phase_step[phase]
                if st is None or (phase == "search_cached" and not res["lse_cached"]):
                    continue
                peak_reset(device)
                res["step_ms"][phase] = timed(lambda: run_step(model, inputs, timesteps[st], session, st),
                                              before=session.reset if phase == "search_fused" else None)
                res["peak_gib"][phase] = peak_gib(device)
                if attn:
                    res["attn_ms"][phase] = attn.take_ms() / reps
                if phase == "search_fused":  # the session's cache_lse choice at the real size
                    res["lse_cached"] = any(x.lse is not None for states in session._layers.values()
                                            for s in states for x in (s, *s.sub.values()))
            res["cache_gib"] = session.cache_bytes() / 2**30
            shares = [x for states in session._layers.values() for s in states
                      if (x := kept_share(s, cfg.block_size)) is not None]
            res["density"] = statistics.mean(shares) if shares else None
            res["imbalance"] = {k: v for k, v in AD.ulysses_imbalance(model).items() if k != "layers"} or None
    finally:
        AD.remove(model)
    res["step_ms"]["dense_best"] = res["step_ms"]["dense"]
    res["peak_gib"]["dense_best"] = res["peak_gib"]["dense"]

    # 3. the real loop, steps tracked from the scheduler as in a pipeline
    if full_loop:
        res["full_loop"] = run_full_loop(model, spec, inputs, cfg, device)
    return res


def run_full_loop(model, spec, inputs, cfg, device):
    """The whole denoising loop once: scheduler.set_timesteps, then per step every forward (CFG
    combined) and scheduler.step; AdaSpa tracks steps through the scheduler. Inputs stay fixed."""
    scheduler = make_scheduler(spec)
    pipe = types.SimpleNamespace(transformer=model, scheduler=scheduler)
    session = AD.apply(pipe, cfg)
    timer = Timer(device)
    per_step = []
    out_c = model.config.out_channels
    try:
        with torch.inference_mode(), best_dense_context(device):
            timesteps = set_timesteps(scheduler, spec, cfg.num_steps, device)
            x = inputs.forwards[0]["hidden_states"]
            sample = x[:, :, :out_c] if spec.cls == "CogVideoXTransformer3DModel" else x[:, :out_c]
            sample = sample[:1].float()
            old_pred = None
            for i, t in enumerate(timesteps):
                timer.start()
                outs = run_step(model, inputs, t)
                per_step.append(timer.stop())
                if spec.cfg == "separate":
                    pred = outs[1] + GUIDANCE * (outs[0] - outs[1])
                elif spec.cfg == "batched":
                    uncond, cond = outs[0].chunk(2)
                    pred = uncond + GUIDANCE * (cond - uncond)
                else:
                    pred = outs[0]
                pred = pred.float()
                if spec.scheduler[0] == "CogVideoXDPMScheduler":
                    _, old_pred = scheduler.step(pred, old_pred, t, timesteps[i - 1] if i > 0 else None, sample,
                                                 return_dict=False)
                else:
                    scheduler.step(pred, t, sample, return_dict=False)
        counts = log_counts(session, len(inputs.forwards))
    finally:
        AD.remove(pipe)
    return {"step_ms": per_step, "total_ms": sum(per_step), "phase_counts": counts}


def run_model(name: str, args, device, dtype, single: dict | None = None) -> list[dict]:
    """single: (model, mode) -> row of a one-GPU run (--single-json), for the speedup over it."""
    spec = PRESETS[name].model.variant(args.tiny)
    cfg = schedule_config(args.steps, args.sparsity, LSE_CACHE[args.lse_cache])
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the same random weights on every rank
    model = build_transformer(spec, device, dtype)
    build_s = time.perf_counter() - t0
    if args.ulysses > 1:
        from diffusers import ContextParallelConfig
        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=args.ulysses), cp_plan=AD.cp_plan(model))
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    inputs = Inputs(spec, model, device, dtype)
    pt = spec.config.get("patch_size_t") or 1
    pt = spec.config["patch_size"][0] if isinstance(spec.config.get("patch_size"), (tuple, list)) else pt
    small = Inputs(spec, model, device, dtype, frames=pt)
    timesteps = set_timesteps(make_scheduler(spec), spec, args.steps, device)
    modes = (["eager"] if not args.compile_only else []) + (["compile"] if args.compile or args.compile_only else [])
    rows = []
    for mode in modes:
        if mode == "compile":
            if not getattr(model, "_repeated_blocks", None):  # diffusers 0.42 names none for CogVideoX
                model._repeated_blocks = REPEATED_BLOCKS[spec.cls]
            model.compile_repeated_blocks(fullgraph=True, backend=args.compile_backend)
        m = measure(model, spec, inputs, small, timesteps, cfg, device, args.reps, mode == "compile",
                    full_loop=name in args.full_loop and mode == "eager", balance_heads=args.balance_heads)
        sm = m["step_ms"]
        counts = phase_counts(cfg, m["lse_cached"])
        totals = {"dense_default": cfg.num_steps * sm["dense_default"], "dense_best": cfg.num_steps * sm["dense_best"],
                  "adaspa": compose(sm, counts)}
        peaks = m["peak_gib"]
        peak_ada = max((peaks[p] for p in PHASES if peaks.get(p) is not None), default=None)
        row = dict(model=name, cls=spec.cls, mode=mode, tiny=args.tiny, tokens=attention_tokens(spec),
                   forwards_per_step=len(inputs.forwards), batch=inputs.batch, steps=cfg.num_steps,
                   sparsity=cfg.sparsity, lse_cached=m["lse_cached"], phase_counts=counts, step_ms=sm,
                   attn_ms=m["attn_ms"] or None,
                   total_s={k: v / 1e3 for k, v in totals.items()},
                   speedup={"vs_best": totals["dense_best"] / totals["adaspa"],
                            "vs_default": totals["dense_default"] / totals["adaspa"]},
                   attn_share_dense=(m["attn_ms"]["dense"] / sm["dense"]) if m["attn_ms"] else None,
                   peak_gib=dict(peaks, adaspa=peak_ada), weights_gib=weights_gib,
                   extra_mem_pct=(100 * (peak_ada / peaks["dense_best"] - 1)) if peak_ada else None,
                   cache_gib=m["cache_gib"], density=m["density"], finite=m["finite"], build_s=build_s,
                   ulysses=args.ulysses, imbalance=m["imbalance"])
        one = (single or {}).get((name, mode))
        if one is not None:
            row["speedup"]["vs_1gpu_adaspa"] = one["total_s"]["adaspa"] * 1e3 / totals["adaspa"]
        if "full_loop" in m:
            fl = m["full_loop"]
            row["full_loop"] = dict(measured_s=fl["total_ms"] / 1e3, composed_s=totals["adaspa"] / 1e3,
                                    diff_pct=100 * (totals["adaspa"] / fl["total_ms"] - 1),
                                    phase_counts=fl["phase_counts"], counts_match=fl["phase_counts"] == counts,
                                    step_ms=fl["step_ms"])
        rows.append(row)
        if _main_rank():
            cached = f"{sm['search_cached'] / 1e3:.3f}" if "search_cached" in sm else "- (LSE not kept)"
            print(f"  {name} [{mode}]: dense {sm['dense_default'] / 1e3:.3f} / best "
                  f"{sm['dense_best'] / 1e3:.3f} s/step, fused {sm['search_fused'] / 1e3:.3f}, sparse "
                  f"{sm['sparse'] / 1e3:.3f}, cached {cached}; {cfg.num_steps}-step "
                  f"adaspa {totals['adaspa'] / 1e3:.2f} s, {row['speedup']['vs_best']:.2f}x best dense", flush=True)
    del model
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return rows


def summary_table(rows: list[dict]) -> str:
    flat = []
    for r in rows:
        sm, ts = r["step_ms"], r["total_s"]
        flat.append(dict(model=r["model"], mode=r["mode"], tokens=r["tokens"],
                         default=sm["dense_default"] / 1e3, best=sm["dense_best"] / 1e3,
                         fused=sm["search_fused"] / 1e3, sparse=sm["sparse"] / 1e3,
                         cached=sm.get("search_cached", float("nan")) / 1e3,
                         T_default=ts["dense_default"], T_best=ts["dense_best"], T_adaspa=ts["adaspa"],
                         x_best=r["speedup"]["vs_best"], x_default=r["speedup"]["vs_default"],
                         attn_pct=100 * r["attn_share_dense"] if r["attn_share_dense"] is not None else None,
                         peak_dense=r["peak_gib"].get("dense_best"), peak_ada=r["peak_gib"].get("adaspa"),
                         extra_pct=r["extra_mem_pct"], x_1gpu=r["speedup"].get("vs_1gpu_adaspa"),
                         loop_diff=r["full_loop"]["diff_pct"] if "full_loop" in r else None))
    cols = [("model", "s", 19), ("mode", "s", 7), ("tokens", "d", 7), ("default", ".3f", 8), ("best", ".3f", 8),
            ("fused", ".3f", 8), ("sparse", ".3f", 8), ("cached", ".3f", 8), ("T_default", ".1f", 9),
            ("T_best", ".1f", 8), ("T_adaspa", ".1f", 8), ("x_best", ".2f", 6), ("x_default", ".2f", 9),
            ("x_1gpu", ".2f", 6),
            ("attn_pct", ".1f", 8), ("peak_dense", ".1f", 10), ("peak_ada", ".1f", 8), ("extra_pct", ".1f", 9),
            ("loop_diff", ".2f", 9)]
    legend = ("step columns: seconds per denoising step (all CFG forwards); T_*: composed totals over the schedule "
              "(s); x_best / x_default: speedup vs dense_best / dense_default (on the same GPUs); x_1gpu: vs "
              "AdaSpa on one GPU (--single-json); attn_pct: attention's share of a dense_best step; peak_*: GiB; "
              "extra_pct: adaspa peak over dense_best peak; loop_diff: composed vs measured full loop (%)")
    return common.table(flat, cols) + "\n" + legend


def _main_rank() -> bool:
    """Rank 0 of torchrun's group, or no group: the process that prints."""
    import torch.distributed as dist
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def init_distributed(world: int, device: str) -> tuple[str, int]:
    """torchrun's process group (NCCL on GPUs, gloo on the CPU); returns this rank's device."""
    import os
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", 1)) != world:
        raise SystemExit(f"--ulysses {world}: launch with torchrun --nproc_per_node {world} (WORLD_SIZE is "
                         f"{os.environ.get('WORLD_SIZE', 'unset')})")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device = f"cuda:{torch.cuda.current_device()}"
    else:  # diffusers 0.42.1 on a machine without an accelerator (see tests/cp_worker.py: cpu_shims)
        import logging
        torch.accelerator.device_count = lambda: 1
        if not hasattr(logging.Logger, "warning_once"):
            logging.Logger.warning_once = logging.Logger.warning
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=E2E_DEFAULT, choices=MODELS)
    ap.add_argument("--steps", type=int, default=50, help="denoising steps (the schedule scales with it)")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--reps", type=int, default=1, help="timed steps per configuration (median)")
    ap.add_argument("--lse-cache", choices=LSE_CACHE, default="auto",
                    help="AdaSpaConfig.cache_lse: auto (None: kept when it fits lse_budget of the weights), "
                         "on, off (every search fused, less memory)")
    ap.add_argument("--compile", action="store_true", help="also run with compile_repeated_blocks(fullgraph=True)")
    ap.add_argument("--compile-only", action="store_true", help="only the compiled run")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--full-loop", nargs="*", default=[], choices=MODELS, metavar="MODEL",
                    help="models whose whole loop also runs once (eager), to check the composed figure")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized variants of the same classes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="write every figure as JSON")
    ap.add_argument("--csv", help="write the summary rows as CSV")
    ap.add_argument("--ulysses", type=int, default=1, help="Ulysses degree (launch with torchrun, N processes)")
    ap.add_argument("--balance-heads", action="store_true", help="with --ulysses: apply(..., balance_heads=True)")
    ap.add_argument("--single-json", help="with --ulysses: JSON of a one-GPU run, for the speedup over it")
    a = ap.parse_args(argv)
    single = None
    if a.single_json:
        with open(a.single_json) as f:
            single = {(r["model"], r["mode"]): r for r in json.load(f)["results"]}
    device = init_distributed(a.ulysses, a.device) if a.ulysses > 1 else a.device
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    import diffusers
    cfg = schedule_config(a.steps, a.sparsity, LSE_CACHE[a.lse_cache])
    if _main_rank():
        print(common.header("bench_e2e: full-size diffusers transformers over the denoising loop, random weights",
                            f"diffusers {diffusers.__version__} | {str(dtype)[6:]} | s={a.sparsity}, block "
                            f"{cfg.block_size}, {cfg.num_steps} steps, warm-up {cfg.warmup_steps}, searches "
                            f"{cfg.search_steps}{' | tiny' if a.tiny else ''}"), flush=True)
    rows = []
    for name in a.models:
        rows += run_model(name, a, device, dtype, single)
    if not _main_rank():
        return rows
    for r in rows:
        if "full_loop" in r:
            fl = r["full_loop"]
            print(f"# full loop {r['model']}: measured {fl['measured_s']:.2f} s, composed {fl['composed_s']:.2f} s "
                  f"({fl['diff_pct']:+.2f} %), phase counts {'match' if fl['counts_match'] else 'DIFFER'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                                  "torch": torch.__version__, "cuda": torch.version.cuda,
                                  "diffusers": diffusers.__version__, "commit": common.commit(), "args": vars(a)},
                       "results": rows}, f, indent=1)
    if a.csv:
        common.write_csv(a.csv, [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in rows])
    print()
    print(summary_table(rows))
    return rows


if __name__ == "__main__":
    main()

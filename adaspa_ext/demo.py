"""The main job: the AdaSpa schedule against dense attention on a synthetic video workload.

Usage:
  python -m adaspa_ext.demo [--preset demo-cpu] [--layers N] [--steps 50] [--sparsity 0.8]
      [--device auto|cpu|cuda] [--out out/demo] [--no-sweep]

Runs `layers` attention layers over the 50-step schedule (dense warm-up, fused search, sparse
reuse, LSE-cached search) on seeded structured inputs (adaspa_ext.workload) and compares every
layer output with dense attention. Prints, per phase, the attention time, the speedup over
dense, the recall of the kept blocks and the relative error; writes block_mask.png (one head's
pattern) and sparsity_sweep.png (speed and error against sparsity). The CPU default runs in
well under two minutes; `--preset hunyuan-720p` (or any model preset of adaspa_ext.presets:
hunyuan-720p, wan14b-720p, wan1.3b-480p, cogvideox1.5-720p) measures the real scale on a GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

from .config import AdaSpaConfig
from .presets import PRESETS
from .runtime import AdaSpaSession, TextSpec, adaspa_attention, forced_key_blocks, unpack_block_mask
from .workload import VideoAttentionWorkload, rel_err, timed, warm_up


def run_schedule(preset, cfg, layers, device, dtype, progress=True, steps=None):
    """Run the schedule over `layers` layers; returns per-call records and the session."""
    wl = VideoAttentionWorkload(preset, device=device, dtype=dtype)
    session = AdaSpaSession(cfg)
    text = TextSpec(preset.text_tokens, preset.text_first)
    steps = cfg.num_steps if steps is None else steps
    q, k, v = wl.qkv(0, 0, cfg.num_steps)
    warm_up(q, k, v, cfg, text)
    F.scaled_dot_product_attention(q, k, v)
    records = []
    it = range(steps)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"{preset.name} s={cfg.sparsity}", unit="step")
    for step in it:
        session.set_step(step)
        for layer in range(layers):
            q, k, v = wl.qkv(layer, step, cfg.num_steps)
            st = session.state(layer)
            phase = session.layer_phase(st)
            out, t_ada = timed(lambda: adaspa_attention(q, k, v, st, session, text, layer), device)
            ref, t_dense = timed(lambda: F.scaled_dot_product_attention(q, k, v), device)
            rec = float(st.recall.mean()) if phase.startswith("search") and st.recall is not None else None
            records.append(dict(step=step, layer=layer, phase=phase, ms=t_ada, dense_ms=t_dense,
                                err=rel_err(out, ref), recall=rec, density=st.density if phase != "dense" else 1.0))
    return records, session, wl


def summarize(records):
    by = defaultdict(list)
    for r in records:
        by[r["phase"]].append(r)
    rows = []
    for phase in ("dense", "search_fused", "search_cached", "sparse"):
        rs = by.get(phase)
        if not rs:
            continue
        ms, dms = sum(r["ms"] for r in rs), sum(r["dense_ms"] for r in rs)
        recalls = [r["recall"] for r in rs if r["recall"] is not None]
        rows.append(dict(phase=phase, calls=len(rs), ms=ms, dense_ms=dms, speedup=dms / ms,
                         recall=statistics.mean(recalls) if recalls else None,
                         err=statistics.mean(r["err"] for r in rs), max_err=max(r["err"] for r in rs)))
    ms, dms = sum(r["ms"] for r in records), sum(r["dense_ms"] for r in records)
    rows.append(dict(phase="total", calls=len(records), ms=ms, dense_ms=dms, speedup=dms / ms, recall=None,
                     err=statistics.mean(r["err"] for r in records), max_err=max(r["err"] for r in records)))
    return rows


TABLE_LEGEND = """\
  calls      layer calls in the phase (layers x steps)
  adaspa ms  total attention time of those calls with AdaSpa (sum over the calls, not per call)
  dense ms   total time of dense attention (torch SDPA) on the same inputs
  speedup    dense ms / adaspa ms
  recall     search phases: mean share of each row's attention mass inside the kept blocks
             (1.0 = nothing dropped); '-' where no search ran
  rel err    mean over the calls of ||out - dense|| / ||dense|| (relative L2 error per layer output)
  max err    the largest of those per-call relative errors"""


def print_table(rows):
    hdr = f"{'phase':>14} {'calls':>5} {'adaspa ms':>10} {'dense ms':>10} {'speedup':>8} {'recall':>7} {'rel err':>8} {'max err':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        rec = f"{r['recall']:.3f}" if r["recall"] is not None else "-"
        print(f"{r['phase']:>14} {r['calls']:>5} {r['ms']:>10.1f} {r['dense_ms']:>10.1f} {r['speedup']:>7.2f}x "
              f"{rec:>7} {r['err']:>8.4f} {r['max_err']:>8.4f}")
    print()
    print(TABLE_LEGEND)


def save_mask_png(session, wl, cfg, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    st = session.state(0)
    mk = math.ceil(st.shape_key[3] / cfg.block_size)
    idx = unpack_block_mask(st.mask, mk, st.width)[0].cpu()  # [H, Mq, W]
    heads = idx.shape[0]
    text_lo, text_hi = (0, wl.p.text_tokens) if wl.p.text_first else (wl.p.video_tokens, wl.p.tokens)
    forced = forced_key_blocks(mk, text_lo, text_hi, cfg.block_size, "cpu")
    # 0 skipped, 1 kept (selected by the search), 2 kept because it holds text (forced in every row)
    colors = ListedColormap(["white", "tab:blue", "tab:orange"])
    fig, axes = plt.subplots(1, min(heads, 4), figsize=(4 * min(heads, 4), 4.4), squeeze=False)
    for hh, ax in enumerate(axes[0]):
        m = torch.zeros(idx.shape[1], mk)
        rows = torch.arange(idx.shape[1]).unsqueeze(-1).expand_as(idx[hh])
        ok = idx[hh] >= 0
        m[rows[ok], idx[hh][ok].long()] = 1
        m[:, forced] *= 2
        ax.imshow(m, cmap=colors, vmin=0, vmax=2, interpolation="nearest", aspect="auto")
        keep = int(st.keep[hh]) if st.keep is not None else -1
        ax.set_title(f"layer 0 head {hh}: {keep} blocks / row + text")
        ax.set_xlabel("key block")
        ax.set_ylabel("query block")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{wl.p.name}: AdaSpa block pattern after the last search (s={cfg.sparsity}, "
                 f"block {cfg.block_size} tokens)")
    fig.legend(handles=[Patch(facecolor="tab:blue", edgecolor="k", label="kept (selected by the search)"),
                        Patch(facecolor="tab:orange", edgecolor="k", label="kept (text block, forced)"),
                        Patch(facecolor="white", edgecolor="k", label="skipped")],
               loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sparsity_sweep(preset, device, dtype, base_cfg, sparsities, path, steps=4):
    """Sparse-phase time and error against sparsity: warm-up 0, search at step 0, then sparse."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = []
    for s in sparsities:
        cfg = AdaSpaConfig(sparsity=s, block_size=base_cfg.block_size, num_steps=steps, warmup_steps=0,
                           search_steps=(0,), head_adaptive=s > 1 / 3)
        recs, _, _ = run_schedule(preset, cfg, 1, device, dtype, progress=False)
        sp = [r for r in recs if r["phase"] == "sparse"]
        pts.append((s, sum(r["dense_ms"] for r in sp) / sum(r["ms"] for r in sp), statistics.mean(r["err"] for r in sp)))
    fig, ax = plt.subplots(figsize=(6, 4.6))
    lines = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:blue", label="speedup")
    lines.append(ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="1x: as fast as dense"))
    ax.set_ylim(0, 1.15 * max(1.0, max(p[1] for p in pts)))
    ax.set_xlabel("sparsity s")
    ax.set_ylabel("speedup of a sparse step over dense", color="tab:blue")
    ax2 = ax.twinx()
    lines += ax2.plot([p[0] for p in pts], [p[2] for p in pts], "s--", color="tab:red", label="relative error")
    ax2.set_ylim(bottom=0)
    ax2.set_ylabel("relative error vs dense", color="tab:red")
    ax.set_title(f"{preset.name} on {device}: speed and error against sparsity")
    fig.legend(handles=lines, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pts


def main(argv=None):
    ap = argparse.ArgumentParser(description="AdaSpa schedule vs dense attention on a synthetic video workload")
    ap.add_argument("--preset", default="demo-cpu", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, default=None, help="layers to run (default: 2, or 1 on big presets)")
    ap.add_argument("--steps", type=int, default=50,
                    help="denoising steps (default 50); warm-up and search steps scale with it (10 and 10, 30 at 50)")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--no-sweep", action="store_true")
    a = ap.parse_args(argv)
    for mod in ("matplotlib", "tqdm"):
        if importlib.util.find_spec(mod) is None:
            raise SystemExit(f"adaspa_ext.demo needs {mod}: install the demo extra, "
                             "pip install 'adaspa_ext[demo]' (make demo's venv has it)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    preset = PRESETS[a.preset]
    layers = a.layers or (2 if preset.tokens < 20000 else 1)
    if a.steps < 1:
        ap.error(f"--steps must be >= 1, got {a.steps}")
    # The paper's schedule scaled to the step count: warm-up 10 and searches at 10, 30 of 50 steps.
    warmup = a.steps // 5
    cfg = AdaSpaConfig(sparsity=a.sparsity, block_size=a.block_size, num_steps=a.steps, warmup_steps=warmup,
                       search_steps=tuple(sorted({warmup, 3 * a.steps // 5})))
    os.makedirs(a.out, exist_ok=True)
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"AdaSpa demo: preset {preset.name} (B={preset.batch} H={preset.heads} D={preset.head_dim} "
          f"N={preset.tokens}: {preset.frames}x{preset.height}x{preset.width} video + {preset.text_tokens} text), "
          f"{layers} layer(s), {cfg.num_steps} steps, s={cfg.sparsity}, block {cfg.block_size}, "
          f"warm-up {cfg.warmup_steps}, searches {cfg.search_steps}, {device} ({dev_name}), {dtype}")
    if device == "cpu":
        print("note: on the CPU adaspa's vectorised C++ kernels run against torch's CPU SDPA; the GPU kernels "
              "are what the speed of video models is about.")
    t0 = time.time()
    records, session, wl = run_schedule(preset, cfg, layers, device, dtype)
    print()
    print_table(summarize(records))
    print(f"cache (LSE + packed patterns, + kernel idx on the CPU) for {layers} layer(s): {session.cache_bytes() / 2**20:.2f} MiB")
    mask_png = os.path.join(a.out, "block_mask.png")
    save_mask_png(session, wl, cfg, mask_png)
    print(f"wrote {mask_png}")
    if not a.no_sweep:
        sweep_png = os.path.join(a.out, "sparsity_sweep.png")
        pts = sparsity_sweep(preset, device, dtype, cfg, [0.5, 0.6, 0.7, 0.8, 0.9], sweep_png)
        print("sparsity sweep (sparse steps):", ", ".join(f"s={s:.1f}: {sp:.2f}x err {e:.4f}" for s, sp, e in pts))
        print(f"wrote {sweep_png}")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()

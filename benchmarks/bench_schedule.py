"""Schedule benchmark: one layer over the 50-step AdaSpa schedule against 50 dense cuDNN calls,
the same schedule with FlexAttention doing the sparse steps on identical masks, cache memory,
and a quality table (recall, output error) against fixed-sparsity and static-window baselines.

Usage:
  python benchmarks/bench_schedule.py [--presets hunyuan-720p wan14b-720p wan1.3b-480p cogvideox1.5-720p]
      [--sparsity 0.8] [--quality-preset wan1.3b-480p] [--no-flex] [--no-quality] [--csv out.csv]

Inputs come from adaspa_ext.workload (structured synthetic video attention at the preset's size).
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

from adaspa_ext import baselines, ops  # noqa: E402
from adaspa_ext import reference  # noqa: E402
from adaspa_ext.config import AdaSpaConfig  # noqa: E402
from adaspa_ext.presets import PRESETS  # noqa: E402
from adaspa_ext.runtime import (AdaSpaSession, TextSpec, adaspa_attention, forced_key_blocks,  # noqa: E402
                                text_block_span, unpack_block_mask)
from adaspa_ext.workload import VideoAttentionWorkload, rel_err, timed, warm_up  # noqa: E402


def event_ms(fn):
    return timed(fn, "cuda" if torch.cuda.is_available() else "cpu")


def split_text(preset, q):
    nt, nv = preset.text_tokens, preset.video_tokens
    if preset.text_first:
        return q[:, :, nt:], q[:, :, :nt]
    return q[:, :, :nv], q[:, :, nv:]


def schedule_run(preset, cfg, dev, flex=True):
    """One layer over the schedule; per-step times of adaspa, dense cuDNN and the Flex variant."""
    wl = VideoAttentionWorkload(preset, device=dev, dtype=torch.bfloat16 if dev == "cuda" else torch.float32)
    session = AdaSpaSession(cfg, record=False)
    text = TextSpec(preset.text_tokens, preset.text_first)
    st = session.state(0)
    dense = "cudnn" if dev == "cuda" else None
    rows = []
    block_mask = None
    bs = cfg.block_size
    q, k, v = wl.qkv(0, 0)
    baselines.sdpa(q, k, v, dense)  # cuDNN plans, outside the timed loop like warm_up
    warm_up(q, k, v, cfg, text)
    for step in range(cfg.num_steps):
        q, k, v = wl.qkv(0, step, cfg.num_steps)
        session.set_step(step)
        phase = session.layer_phase(st)
        _, t_dense = event_ms(lambda: baselines.sdpa(q, k, v, dense))
        _, t_ada = event_ms(lambda: adaspa_attention(q, k, v, st, session, text, 0))
        t_flex = None
        if flex:
            if phase == "dense":
                t_flex = t_ada
            else:
                nk = k.shape[2]
                mk = math.ceil(nk / bs)
                idx = unpack_block_mask(st.mask, mk, st.width)
                q_v, q_t = split_text(preset, q)
                if phase.startswith("search"):
                    block_mask = baselines.flex_block_mask(idx, q_v.shape[2], nk, bs)
                    baselines.flex_attention(q_v, k, v, block_mask, bs)  # compile / warm for this shape

                def flex_step():
                    o_v = baselines.flex_attention(q_v, k, v, block_mask, bs)
                    if preset.text_tokens:
                        o_t = baselines.sdpa(q_t, k, v)
                        parts = [o_t, o_v] if preset.text_first else [o_v, o_t]
                        return torch.cat([p.transpose(1, 2) for p in parts], dim=1)
                    return o_v
                _, t_sparse_flex = event_ms(flex_step)
                if phase == "sparse":
                    t_flex = t_sparse_flex
                else:  # same search kernels; the sparse attention of the step through Flex instead
                    _, t_sparse_ours = event_ms(lambda: ops.sparse_attn(q_v, k, v, idx, bs))
                    t_flex = t_ada - (t_sparse_ours if phase == "search_cached" else 0.0) + \
                        (t_sparse_flex if phase == "search_cached" else 0.0)
        rows.append(dict(step=step, phase=phase, ada_ms=t_ada, dense_ms=t_dense, flex_ms=t_flex))
    return rows, session


def quality(preset, sparsity, dev, layers=2, eval_steps=(10, 20, 30, 40, 49)):
    """Mean recall (exact-LSE kept mass) and relative output error at eval steps for AdaSpa, a
    fixed sparsity for all heads, and a static local window of AdaSpa's density."""
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    base = AdaSpaConfig(sparsity=sparsity)
    fixed = AdaSpaConfig(sparsity=sparsity, head_adaptive=False)
    wl = VideoAttentionWorkload(preset, device=dev, dtype=dtype)
    text = TextSpec(preset.text_tokens, preset.text_first)
    bs = base.block_size
    out = {}
    for name, cfg in (("adaspa", base), ("fixed", fixed), ("window", None)):
        session = AdaSpaSession(cfg or base, record=False)
        rec, err, dens = [], [], []
        for layer in range(layers):
            st = session.state(layer)
            for step in range(base.num_steps):
                if cfg is None and step not in eval_steps:
                    continue
                q, k, v = wl.qkv(layer, step, base.num_steps)
                session.set_step(step)
                if cfg is not None:
                    o = adaspa_attention(q, k, v, st, session, text, layer)
                if step not in eval_steps:
                    continue
                nk = k.shape[2]
                mk = math.ceil(nk / bs)
                q_v, _ = split_text(preset, q)
                ref_v, _, scores = ops.attn_search(q_v, k, v, bs)
                if cfg is not None:
                    idx = unpack_block_mask(st.mask, mk, st.width)
                    o_v, _ = split_text(preset, o)
                else:  # window of AdaSpa's mean width, plus the text blocks
                    total = max(1, round(out["adaspa"]["density"] * mk))
                    idx = window_index(q_v.shape[2], nk, bs, total, preset, dev).expand(q.shape[0], q.shape[1], -1, -1)
                    o_v, _ = ops.sparse_attn(q_v, k, v, idx.contiguous(), bs)
                sel = reference.block_mask_from_idx(idx, mk).float()
                rec.append(((scores * sel).sum(-1) / scores.sum(-1)).mean().item())
                err.append(rel_err(o_v, ref_v))
                dens.append((idx >= 0).float().sum(-1).mean().item() / mk)
        out[name] = dict(recall=sum(rec) / len(rec), err=sum(err) / len(err), density=sum(dens) / len(dens))
    return out


def window_index(nq, nk, bs, total, preset, dev):
    """[1, 1, Mq, total]: for each query block the text blocks plus the key blocks nearest its own
    position (clipped at the ends), `total` blocks in all."""
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    nt = preset.text_tokens
    lo, hi = (0, nt) if preset.text_first else (preset.video_tokens, nk)
    first, end = text_block_span(lo, hi, bs)
    width = max(1, total - (end - first))
    off = nt if preset.text_first else 0
    centre = (torch.arange(mq, device=dev) * bs + off) // bs
    start = torch.clamp(centre - width // 2, 0, max(0, mk - width))
    blocks = start.unsqueeze(-1) + torch.arange(width, device=dev)
    forced = forced_key_blocks(mk, lo, hi, bs, dev)
    m = torch.zeros(mq, mk + 1, dtype=torch.bool, device=dev)
    m.scatter_(-1, blocks.clamp(max=mk - 1), True)
    m[:, :mk] |= forced
    m = m[:, :mk]
    w = int(m.sum(-1).max())
    idx = torch.sort(torch.where(m, torch.arange(mk, device=dev), mk), -1).values[:, :w]
    return torch.where(idx == mk, -1, idx).int()[None, None]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["hunyuan-720p", "wan14b-720p", "wan1.3b-480p", "cogvideox1.5-720p"]
    ap.add_argument("--presets", nargs="+", default=names, choices=sorted(PRESETS))
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--block-size", type=int, default=64, choices=[64, 128])
    ap.add_argument("--quality-preset", default="wan1.3b-480p", choices=sorted(PRESETS))
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--csv")
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(common.header("bench_schedule: one layer over the 50-step AdaSpa schedule",
                        f"s={a.sparsity}, block {a.block_size}, warm-up 10, searches (10, 30); bf16 synthetic workload"))
    cfg = AdaSpaConfig(sparsity=a.sparsity, block_size=a.block_size)
    summary, csv_rows = [], []
    for name in a.presets:
        p = PRESETS[name]
        rows, session = schedule_run(p, cfg, dev, flex=not a.no_flex)
        tot = lambda key, ph=None: sum(r[key] for r in rows if ph is None or r["phase"] in ph)  # noqa: E731
        search = tot("ada_ms", ("search_fused", "search_cached"))
        layer_cache = session.cache_bytes()
        summary.append(dict(preset=name, tokens=p.tokens, dense_s=tot("dense_ms") / 1e3, adaspa_s=tot("ada_ms") / 1e3,
                            speedup=tot("dense_ms") / tot("ada_ms"),
                            flex_s=tot("flex_ms") / 1e3 if not a.no_flex else None,
                            flex_speedup=tot("dense_ms") / tot("flex_ms") if not a.no_flex else None,
                            search_pct=100 * search / tot("ada_ms"),
                            sparse_step_ms=sum(r["ada_ms"] for r in rows if r["phase"] == "sparse") /
                            max(1, sum(r["phase"] == "sparse" for r in rows)),
                            cache_gb=layer_cache * p.layers / 1e9))
        csv_rows += [dict(preset=name, **r) for r in rows]
        print(f"  {name}: dense {summary[-1]['dense_s']:.2f} s, adaspa {summary[-1]['adaspa_s']:.2f} s "
              f"({summary[-1]['speedup']:.2f}x)", flush=True)
        del session
        torch.cuda.empty_cache()
    print()
    print(common.table(summary, [("preset", "s", 17), ("tokens", "d", 7), ("dense_s", ".2f", 7),
                                 ("adaspa_s", ".2f", 8), ("speedup", ".2f", 7), ("flex_s", ".2f", 7),
                                 ("flex_speedup", ".2f", 12), ("search_pct", ".1f", 10),
                                 ("sparse_step_ms", ".1f", 14), ("cache_gb", ".2f", 8)]))
    if not a.no_quality:
        qrows = []
        for s in (0.7, 0.8, 0.9):
            res = quality(PRESETS[a.quality_preset], s, dev)
            for method, r in res.items():
                qrows.append(dict(sparsity=s, method=method, **r))
        print()
        print(f"# quality on {a.quality_preset} (2 layers, steps 10/20/30/40/49): recall = exact-LSE kept mass")
        print(common.table(qrows, [("sparsity", ".1f", 8), ("method", "s", 7), ("density", ".3f", 7),
                                   ("recall", ".4f", 7), ("err", ".4f", 7)]))
        csv_rows += qrows
    if a.csv:
        common.write_csv(a.csv, csv_rows)


if __name__ == "__main__":
    main()

"""Sparse-step overhead: what one layer's sparse step costs outside the attention kernels.

Usage:
  python benchmarks/bench_step_overhead.py [--presets wan1.3b-480p hunyuan-720p] [--legacy]
      [--sparsity 0.8] [--reps 50] [--warmup 5] [--csv out.csv] [--tiny]

Per preset (adaspa_ext.presets; one layer, bf16 on a GPU) a fused search fills the layer's state,
then the sparse step is timed, median of --reps single calls, each between two CUDA events (host
clock on the CPU):
  step   the whole adaspa_attention call in the sparse phase, as a GPU runs it: the layer keeps
         only the packed pattern (a CPU state's cached idx is dropped), so the step builds its
         idx (mask_to_idx), runs sparse_attn_out and, when the text is not block aligned, the text
         rows' dense call, writing one output;
  attn   the same step's attention kernels alone, called bare with a prebuilt idx: sparse_attn_out
         over the rows of the video call, plus (column text) the text rows' dense call when the
         step makes one;
  overhead = step - attn, in ms and as a share of the step.
--legacy also times the step as it was before mask_to_idx / sparse_attn_out (unpack_block_mask,
_with_text_lists, separate output parts joined by torch.cat) in the same run, and checks that
both give the same output. The GPU waits for the host during each timed call (nothing is queued
ahead), so host-side work counts in full: an upper bound of what a model's loop sees.
--tiny: the tiny preset on the CPU, and a variant of it whose text is not block aligned (the
test suite runs it).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

from adaspa_ext import ops  # noqa: E402
from adaspa_ext.config import AdaSpaConfig  # noqa: E402
from adaspa_ext.presets import PRESETS  # noqa: E402
from adaspa_ext.runtime import (AdaSpaSession, TextSpec, _with_text_lists, adaspa_attention,  # noqa: E402
                                unpack_block_mask)
from adaspa_ext.workload import VideoAttentionWorkload, timed, warm_up  # noqa: E402

DEFAULT_PRESETS = ["wan1.3b-480p", "hunyuan-720p"]
COLS = [("preset", "s", 14), ("path", "s", 7), ("step_ms", ".3f", 9), ("attn_ms", ".3f", 9),
        ("text_ms", ".3f", 9), ("overhead_ms", ".3f", 11), ("overhead_pct", ".2f", 12), ("same_out", "s", 8)]


def median_ms(fn, device, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(reps))


class Layer:
    """One layer's q, k, v at a preset's size, its state after the fused search, and the pieces
    of its sparse step (which rows share the sparse_attn call, the prebuilt idx)."""

    def __init__(self, preset, cfg: AdaSpaConfig, device, dtype):
        wl = VideoAttentionWorkload(preset, device=device, dtype=dtype)
        step = cfg.search_steps[0]
        self.q, self.k, self.v = wl.qkv(0, step, cfg.num_steps)
        self.text = TextSpec(preset.text_tokens, preset.text_first)
        warm_up(self.q, self.k, self.v, cfg, self.text)
        self.session = AdaSpaSession(cfg, record=False)
        self.session.set_step(step)
        self.state = self.session.state(0)
        adaspa_attention(self.q, self.k, self.v, self.state, self.session, self.text, 0)  # fused search
        self.session.set_step(step + 1)
        assert self.session.layer_phase(self.state) == "sparse"
        self.state.idx = None  # a GPU state keeps the packed pattern only
        bs, n, nt = cfg.block_size, self.q.shape[2], preset.text_tokens
        nv = n - nt
        self.bs, self.mk = bs, math.ceil(n / bs)
        self.video = slice(nt, n) if preset.text_first else slice(0, nv)
        self.text_rows = slice(0, nt) if preset.text_first else slice(nv, n)
        aligned = nt == 0 or (nt if preset.text_first else nv) % bs == 0
        # the rows of the sparse_attn call: all of q (text query blocks with full key lists) when
        # the text is block aligned, else the video rows, the text rows going through SDPA
        self.q_call = self.q if aligned else self.q[:, :, self.video]
        self.text_qblocks = math.ceil(self.q_call.shape[2] / bs) - math.ceil(nv / bs)
        self.text_call = not aligned
        self.idx = ops.mask_to_idx(self.state.mask, self.mk, self.state.width, self.text_qblocks, preset.text_first)
        self.out_call = torch.empty_like(self.q_call)  # attention_kernels' output, made once

    def lean(self):
        return adaspa_attention(self.q, self.k, self.v, self.state, self.session, self.text, 0)

    def legacy(self):
        """The sparse step before mask_to_idx and sparse_attn_out: six-odd torch kernels to unpack
        the pattern, the text lists joined by torch.cat, and the output parts by torch.cat (on a
        GPU the text rows always had their own dense call)."""
        q, k, v, st = self.q, self.k, self.v, self.state
        self.session.layer_phase(st)
        one_call = self.text.length == 0 or (q.device.type == "cpu" and not self.text_call)
        q_call = q if one_call else q[:, :, self.video]
        text_qblocks = math.ceil(q_call.shape[2] / self.bs) - math.ceil((q.shape[2] - self.text.length) / self.bs)
        idx = _with_text_lists(unpack_block_mask(st.mask, self.mk, st.width), self.mk, text_qblocks, self.text.first)
        out_v = ops.sparse_attn(q_call, k, v, idx, self.bs)[0]
        if one_call:
            return out_v
        out_t = F.scaled_dot_product_attention(q[:, :, self.text_rows], k, v)
        parts = [out_t, out_v] if self.text.first else [out_v, out_t]
        return torch.cat([p.transpose(1, 2) for p in parts], dim=1).transpose(1, 2)

    def attention_kernels(self):
        # the kernel the lean step runs (sparse_attn_out: no LSE)
        ops.sparse_attn_out(self.q_call, self.k, self.v, self.idx, self.out_call, self.bs)
        if self.text_call:
            self.text_attention()
        return self.out_call

    def text_attention(self):
        return F.scaled_dot_product_attention(self.q[:, :, self.text_rows], self.k, self.v)


def run_preset(preset, cfg, device, dtype, legacy: bool, warmup: int, reps: int) -> list[dict]:
    layer = Layer(preset, cfg, device, dtype)
    attn = median_ms(layer.attention_kernels, device, warmup, reps)
    text = median_ms(layer.text_attention, device, warmup, reps) if layer.text_call else 0.0
    paths = [("lean", layer.lean)] + ([("legacy", layer.legacy)] if legacy else [])
    want = layer.lean()
    rows = []
    for name, fn in paths:
        step = median_ms(fn, device, warmup, reps)
        same = torch.equal(fn(), want)
        rows.append(dict(preset=preset.name, path=name, step_ms=step, attn_ms=attn, text_ms=text,
                         overhead_ms=step - attn, overhead_pct=100 * (step - attn) / step, same_out=str(same)))
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS, choices=sorted(PRESETS))
    ap.add_argument("--legacy", action="store_true", help="also time the step before mask_to_idx / sparse_attn_out")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--reps", type=int, default=50, help="timed calls per measurement (median)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--tiny", action="store_true", help="the tiny preset on the CPU (for the tests)")
    args = ap.parse_args(argv)
    table = dict(PRESETS)
    if args.tiny:
        table["tiny-text37"] = dataclasses.replace(PRESETS["tiny"], name="tiny-text37", text_tokens=37, text_first=True)
        device, presets = "cpu", ["tiny", "tiny-text37"]
    else:
        device, presets = ("cuda" if torch.cuda.is_available() else "cpu"), args.presets
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = AdaSpaConfig(sparsity=args.sparsity)
    shapes = ", ".join(f"{p}: B {table[p].batch} H {table[p].heads} N {table[p].tokens} "
                       f"(text {table[p].text_tokens}) D {table[p].head_dim}" for p in presets)
    print(common.header("sparse-step overhead outside the attention kernels",
                        f"{device}, {dtype}, s {args.sparsity}, block {cfg.block_size}, median of {args.reps}; {shapes}"))
    rows = []
    with torch.inference_mode():
        for name in presets:
            rows += run_preset(table[name], cfg, device, dtype, args.legacy, args.warmup, args.reps)
    print(common.table(rows, COLS))
    print("# attn: the step's attention kernels called bare (sparse_attn_out with a prebuilt idx, plus text_ms, the "
          "text rows' dense call where the step makes one); overhead = step - attn")
    if args.csv:
        common.write_csv(args.csv, rows)
    return rows


if __name__ == "__main__":
    main()

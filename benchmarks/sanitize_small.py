"""Every compiled kernel (each kernel path) once on small odd shapes, for compute-sanitizer (memcheck / racecheck).

Usage: compute-sanitizer --tool memcheck python benchmarks/sanitize_small.py
"""
import math
import os

import torch

import adaspa_ext as A
from adaspa_ext import _build_config, ops

DT = {"fp16": torch.float16, "bf16": torch.bfloat16}


def main():
    torch.manual_seed(0)
    seen = set()
    for _, path, dt, d, bs in _build_config.CUDA_KERNELS:
        if (path, dt, d, bs) in seen:
            continue
        seen.add((path, dt, d, bs))
        os.environ["ADASPA_KERNEL_PATH"] = path
        if path == "hopper" and torch.cuda.get_device_capability() != (9, 0):
            print(f"skipped path={path} dtype={dt} d={d} bs={bs}: the hopper kernels need compute capability 9.0")
            continue
        nq, nk = 2 * bs + 5, 3 * bs - 7  # partial last blocks, Nq != Nk
        q = torch.randn(1, 2, nq, d, device="cuda", dtype=DT[dt])
        k = torch.randn(1, nk, 2, d, device="cuda", dtype=DT[dt]).transpose(1, 2)
        v = torch.randn(1, 2, nk, d, device="cuda", dtype=DT[dt])
        mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
        # rows with two accepted blocks (0, 2; the rest -1, out of range or not ascending), one, none
        rows = torch.tensor([[0, 2, -1, 7, 1], [1, -1, -1, -1, -1], [-1] * 5], dtype=torch.int32, device="cuda")
        idx = rows[torch.arange(mq, device="cuda") % 3].expand(1, 2, mq, 5).contiguous()
        has = {op: (path, dt, d, bs) in ops.compiled_tuples(op) for op in ("sparse_attn", "attn_search", "block_scores")}
        if has["sparse_attn"]:
            A.sparse_attn(q, k, v, idx, bs)
            out = torch.empty(1, nq, 2, d, device="cuda", dtype=DT[dt]).transpose(1, 2)  # rows of a [B, N, H, D] buffer
            # the hopper kernel also with its tiles in the planned longest-first order (tile_order.h)
            os.environ["ADASPA_TILE_ORDER"] = "always"
            A.sparse_attn_out(q, k, v, idx, out, bs)
            del os.environ["ADASPA_TILE_ORDER"]
        if has["attn_search"]:
            _, lse, s = A.attn_search(q, k, v, bs)
            if path == "hopper":  # the one-pass search with one scratch slot: CTAs wait and reuse it
                os.environ["ADASPA_SEARCH_SLOTS"] = "1"
                A.attn_search(q, k, v, bs)
                del os.environ["ADASPA_SEARCH_SLOTS"]
            A.select_blocks(s, torch.tensor([1, mk], dtype=torch.int32, device="cuda"),
                            torch.tensor([True] + [False] * (mk - 1), device="cuda"))
            if has["block_scores"]:
                A.block_scores(q, k, lse, bs)
                if path == "hopper":  # a grid of >= one 256-row CTA per SM: the four-warpgroup score kernel
                    h = torch.cuda.get_device_properties(0).multi_processor_count
                    qh = torch.randn(1, h, nq, d, device="cuda", dtype=DT[dt])
                    kh = torch.randn(1, h, nk, d, device="cuda", dtype=DT[dt])
                    A.block_scores(qh, kh, torch.rand(1, h, nq, device="cuda") + 4.0, bs)
        print(f"ran path={path} dtype={dt} d={d} bs={bs}: {', '.join(op for op, ok in has.items() if ok)}")
    # the packed pattern -> idx kernel: mk 13 (bits above it set), with and without text query blocks
    packed = torch.randint(0, 256, (1, 2, 5, 2), dtype=torch.uint8, device="cuda")
    for text_qblocks, first, width in ((0, False, 6), (0, False, 13), (2, False, 13), (1, True, 4)):
        A.mask_to_idx(packed, 13, width, text_qblocks, first)
    print("ran mask_to_idx")
    torch.cuda.synchronize()
    print("sanitize_small: done")


if __name__ == "__main__":
    main()

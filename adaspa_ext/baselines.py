"""Baselines measured against adaspa: torch SDPA dense backends and FlexAttention driven by the
very same block index. Shared by the GPU tests and the benchmarks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sdpa(q: Tensor, k: Tensor, v: Tensor, backend: str | None = None) -> Tensor:
    """Dense attention through torch SDPA, optionally pinned to 'cudnn', 'flash' or 'math'."""
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    b = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}[backend]
    with sdpa_kernel(b):
        return F.scaled_dot_product_attention(q, k, v)


def flex_block_mask(idx: Tensor, nq: int, nk: int, block_size: int):
    """BlockMask with exactly the key blocks of idx ([B, H, Mq, Kmax], -1 padded, ascending)."""
    from torch.nn.attention.flex_attention import BlockMask
    b, h, mq, kmax = idx.shape
    mk = math.ceil(nk / block_size)
    counts = (idx >= 0).sum(-1).int()
    full = torch.zeros(b, h, mq, mk, dtype=torch.int32, device=idx.device)
    full[..., :kmax] = idx.clamp_min(0)
    return BlockMask.from_kv_blocks(counts, full, BLOCK_SIZE=block_size, seq_lengths=(nq, nk))


_compiled_flex = None


def flex_attention(q: Tensor, k: Tensor, v: Tensor, block_mask, block_size: int) -> Tensor:
    """Compiled FlexAttention. A 64-token mask needs 64-wide kernel tiles (Inductor requires the
    mask block to be a multiple of its tile), so those are requested for block 64."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention as fa
    if _compiled_flex is None:
        _compiled_flex = torch.compile(fa, dynamic=False)
    opts = {"BLOCK_M": 64, "BLOCK_N": 64} if block_size == 64 else None
    return _compiled_flex(q, k, v, block_mask=block_mask, kernel_options=opts)

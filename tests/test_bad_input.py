"""Bad input raises a clear Python exception naming the argument; never a crash or garbage."""
import pytest
import torch

import adaspa_ext as A
from conftest import DEVICES


def qkv(device, b=1, h=2, n=100, d=64, dtype=torch.bfloat16):
    return [torch.randn(b, h, n, d, dtype=dtype, device=device) for _ in range(3)]


def idx_for(device, b=1, h=2, mq=2, kmax=2):
    return torch.zeros(b, h, mq, kmax, dtype=torch.int32, device=device)


def packed_for(device, b=1, h=2, mq=3, nbytes=2):
    return torch.zeros(b, h, mq, nbytes, dtype=torch.uint8, device=device)


CASES = [
    # (name, call(device), exception, message pattern)
    ("q rank", lambda dv: A.sparse_attn(qkv(dv)[0][0], *qkv(dv)[1:], idx_for(dv)), ValueError, "'q' must be 4-D"),
    ("q dtype", lambda dv: A.sparse_attn(*(t.to(torch.int32) for t in qkv(dv)), idx_for(dv)), TypeError,
     "'q' must be float16 or bfloat16"),
    ("k dtype mismatch", lambda dv: A.sparse_attn(qkv(dv)[0], qkv(dv, dtype=torch.float16)[1], qkv(dv)[2],
                                                 idx_for(dv)), TypeError, "'k' must have the dtype of 'q'"),
    ("v shape", lambda dv: A.sparse_attn(*qkv(dv)[:2], qkv(dv, n=99)[2], idx_for(dv)), ValueError,
     "'v' must have the shape of 'k'"),
    ("k heads", lambda dv: A.sparse_attn(qkv(dv)[0], qkv(dv, h=3)[1], qkv(dv, h=3)[2], idx_for(dv)), ValueError,
     "'k' must be \\[B, H, Nk, D\\]"),
    ("head dim", lambda dv: A.sparse_attn(*qkv(dv, d=96), idx_for(dv)), ValueError, "head dim .* one of \\{64, 128\\}"),
    ("last dim stride", lambda dv: A.sparse_attn(*(torch.randn(1, 2, 64, 100, dtype=torch.bfloat16, device=dv)
                                                  .transpose(-1, -2) for _ in range(3)), idx_for(dv)),
     ValueError, "contiguous last dim"),
    ("block size", lambda dv: A.sparse_attn(*qkv(dv), idx_for(dv), block_size=32), ValueError,
     "block_size must be one of \\{64, 128\\}"),
    ("scale", lambda dv: A.sparse_attn(*qkv(dv), idx_for(dv), scale=-1.0), ValueError, "'scale' must be positive"),
    ("idx dtype", lambda dv: A.sparse_attn(*qkv(dv), idx_for(dv).long()), TypeError, "'idx' must be int32"),
    ("idx shape", lambda dv: A.sparse_attn(*qkv(dv), idx_for(dv, mq=3)), ValueError,
     "'idx' must be \\[B, H, Mq, Kmax\\]"),
    ("lse shape", lambda dv: A.block_scores(*qkv(dv)[:2], torch.zeros(1, 2, 99, device=dv)), ValueError,
     "'lse' must be \\[B, H, Nq\\]"),
    ("lse dtype", lambda dv: A.block_scores(*qkv(dv)[:2], torch.zeros(1, 2, 100, device=dv).double()), TypeError,
     "'lse' must be float32"),
    ("scores dtype", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv).double(),
                                                torch.ones(2, dtype=torch.int32)), TypeError, "'scores' must be float32"),
    ("keep shape", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv), torch.ones(3, dtype=torch.int32)),
     ValueError, "'keep' must be \\[H\\]"),
    ("keep dtype", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv), torch.ones(2)), TypeError,
     "'keep' must be int32"),
    ("keep range", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv), torch.tensor([5, 1], dtype=torch.int32)),
     ValueError, "'keep' values must lie in \\[0, Mk = 4\\]"),
    ("forced shape", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv), torch.ones(2, dtype=torch.int32),
                                                torch.zeros(5, dtype=torch.bool, device=dv)), ValueError,
     "'forced_kv' must be \\[Mk\\]"),
    ("forced dtype", lambda dv: A.select_blocks(torch.zeros(1, 2, 3, 4, device=dv), torch.ones(2, dtype=torch.int32),
                                                torch.zeros(4, device=dv)), TypeError, "'forced_kv' must be bool"),
    ("packed dtype", lambda dv: A.mask_to_idx(packed_for(dv).int(), 9, 4), TypeError, "'packed' must be uint8"),
    ("packed rank", lambda dv: A.mask_to_idx(packed_for(dv)[0], 9, 4), ValueError, "'packed' must be 4-D"),
    ("packed bytes", lambda dv: A.mask_to_idx(packed_for(dv), 17, 4), ValueError,
     "'packed' must be \\[B, H, Mq, ceil\\(mk / 8\\)\\] = \\[1, 2, 3, 3\\] for mk = 17"),
    ("mk negative", lambda dv: A.mask_to_idx(packed_for(dv), -1, 0), ValueError, "'mk' must lie in \\[0, 2\\^31\\)"),
    ("width above mk", lambda dv: A.mask_to_idx(packed_for(dv), 9, 10), ValueError,
     "'width' must lie in \\[0, mk = 9\\], got 10"),
    ("width negative", lambda dv: A.mask_to_idx(packed_for(dv), 9, -1), ValueError, "'width' must lie in"),
    ("text_qblocks", lambda dv: A.mask_to_idx(packed_for(dv), 9, 4, -2), ValueError, "'text_qblocks' must lie in"),
    ("out dtype", lambda dv: A.sparse_attn_out(*qkv(dv), idx_for(dv), qkv(dv, dtype=torch.float16)[0]), TypeError,
     "'out' must have the dtype of 'q'"),
    ("out shape", lambda dv: A.sparse_attn_out(*qkv(dv), idx_for(dv), qkv(dv, n=99)[0]), ValueError,
     "'out' must have the shape of 'q'"),
    ("out last dim", lambda dv: A.sparse_attn_out(*qkv(dv), idx_for(dv), torch.empty(1, 2, 64, 100, dtype=torch.bfloat16,
                                                                                        device=dv).transpose(-1, -2)),
     ValueError, "'out' must have a contiguous last dim"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(device, name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(device)


@pytest.mark.gpu
def test_device_mismatch():
    q, k, v = qkv("cuda")
    with pytest.raises(ValueError, match="'k' must be on cuda"):
        A.sparse_attn(q, k.cpu(), v, idx_for("cuda"))
    with pytest.raises(ValueError, match="'idx' must be on cuda"):
        A.sparse_attn(q, k, v, idx_for("cpu"))
    with pytest.raises(ValueError, match="'out' must be on cuda"):
        A.sparse_attn_out(q, k, v, idx_for("cuda"), q.cpu())


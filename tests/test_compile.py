"""Custom-op hygiene: opcheck for every op, fake-kernel strides, torch.compile(fullgraph=True)."""
import math

import pytest
import torch

import adaspa_ext as A
from conftest import DEVICES, require_kernels
from util import make_qkv, random_idx


def op_samples(device):
    for op, bs in (("sparse_attn", 64), ("attn_search", 128), ("block_scores", 64)):
        require_kernels(device, op, torch.bfloat16, 64, bs)
    q, k, v = make_qkv(1, 2, 130, 200, 64, torch.bfloat16, device, layout="bnhd")
    idx = random_idx(1, 2, 3, 4, 3, density=0.5, device=device)
    lse = torch.randn(1, 2, 130, device=device) + 5
    scores = torch.rand(1, 2, 3, 4, device=device)
    keep = torch.tensor([1, 2], dtype=torch.int32, device=device)
    forced = torch.tensor([0, 0, 0, 1], dtype=torch.bool, device=device)
    packed = torch.randint(0, 256, (1, 2, 3, 3), dtype=torch.uint8, device=device)
    return [
        (torch.ops.adaspa.sparse_attn.default, (q, k, v, idx, 64, None)),
        (torch.ops.adaspa.sparse_attn.default, (q, k, v, idx, 64, 0.2)),
        (torch.ops.adaspa.attn_search.default, (q, k, v, 128, None)),
        (torch.ops.adaspa.block_scores.default, (q, k, lse, 64, None)),
        (torch.ops.adaspa.select_blocks.default, (scores, keep, forced)),
        (torch.ops.adaspa.select_blocks.default, (scores, keep, None)),
        (torch.ops.adaspa.sparse_attn_out.default, (q, k, v, idx, torch.empty_like(q), 64, None)),
        (torch.ops.adaspa.mask_to_idx.default, (packed, 20, 5, 0, False)),
        (torch.ops.adaspa.mask_to_idx.default, (packed, 20, 20, 2, True)),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for op, args in op_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", DEVICES)
def test_fake_kernels_reproduce_strides(device):
    from torch._subclasses.fake_tensor import FakeTensorMode
    for op, args in op_samples(device):
        real = op(*args)
        with FakeTensorMode() as mode:
            fargs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            fake = op(*fargs)
        real = real if isinstance(real, tuple) else () if real is None else (real,)
        fake = fake if isinstance(fake, tuple) else () if fake is None else (fake,)
        assert len(real) == len(fake), op
        for r, f in zip(real, fake):
            assert (r.shape, r.stride(), r.dtype, r.device) == (f.shape, f.stride(), f.dtype, f.device), op


def search_select_attend(q, k, v, keep):
    out0, lse, scores = A.attn_search(q, k, v, 64)
    idx, kept = A.select_blocks(scores, keep)
    out, lse2 = A.sparse_attn(q, k, v, idx, 64)
    return out0, out, lse2, kept


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device):
    require_kernels(device, "attn_search", torch.bfloat16, 64, 64)
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    torch._dynamo.reset()
    q, k, v = make_qkv(1, 2, 200, 200, 64, torch.bfloat16, device, layout="bnhd")
    keep = torch.tensor([1, 3], dtype=torch.int32, device=device)
    eager = search_select_attend(q, k, v, keep)
    compiled = torch.compile(search_select_attend, fullgraph=True)(q, k, v, keep)
    for e, c in zip(eager, compiled):
        assert e.stride() == c.stride()
        torch.testing.assert_close(e, c, rtol=0, atol=0)


def lean_sparse_step(q, k, v, packed):
    """The runtime's sparse step with text rows after the video rows: pattern to idx, video rows
    written into a slice of one output, text rows densely into the rest."""
    out = torch.empty_like(q)
    idx = A.mask_to_idx(packed, 4, 3)
    A.sparse_attn_out(q[:, :, :130], k, v, idx, out[:, :, :130], 64)
    out[:, :, 130:] = torch.nn.functional.scaled_dot_product_attention(q[:, :, 130:], k, v)
    return out, idx


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_lean_sparse_step(device):
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    torch._dynamo.reset()
    q, k, v = make_qkv(1, 2, 150, 200, 64, torch.bfloat16, device, layout="bnhd")
    packed = torch.tensor([5, 3, 8], dtype=torch.uint8, device=device).view(1, 1, 3, 1).expand(1, 2, 3, 1).contiguous()
    eager = lean_sparse_step(q, k, v, packed)
    compiled = torch.compile(lean_sparse_step, fullgraph=True)(q, k, v, packed)
    for e, c in zip(eager, compiled):
        assert e.stride() == c.stride()
        torch.testing.assert_close(e, c, rtol=0, atol=0)


def _grad_inputs(device):
    q, k, v = make_qkv(1, 2, 200, 200, 64, torch.bfloat16, device, layout="bnhd")
    return [t.detach().requires_grad_() for t in (q, k, v)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_backward_raises_forward_only(device, compiled):
    """Inputs may require grad (the forward runs, outputs carry a grad_fn), but asking for a
    gradient raises NotImplementedError naming the op instead of leaving q.grad = None."""
    for op in ("attn_search", "sparse_attn", "block_scores"):
        require_kernels(device, op, torch.bfloat16, 64, 64)
    torch._dynamo.reset()
    q, k, v = _grad_inputs(device)
    keep = torch.tensor([1, 3], dtype=torch.int32, device=device)
    fn = torch.compile(search_select_attend, fullgraph=True) if compiled else search_select_attend
    out0, out, lse2, kept = fn(q, k, v, keep)
    assert out0.requires_grad and out.requires_grad and lse2.requires_grad and kept.requires_grad
    for t, op in ((out, "sparse_attn"), (out0, "attn_search"), (kept, "select_blocks")):
        # a compiled graph has one backward for all its outputs: it names the first op it reaches
        op = "(sparse_attn|attn_search|select_blocks)" if compiled else op
        with pytest.raises(NotImplementedError, match=f"adaspa.{op} has no backward: the adaspa ops are forward-only"):
            t.float().sum().backward(retain_graph=True)
    assert q.grad is None and k.grad is None and v.grad is None
    # block_scores through the same path; under no_grad nothing requires grad and nothing raises
    lse = torch.randn(1, 2, 200, device=device, requires_grad=True)
    s = A.block_scores(q, k, lse, 64)
    with pytest.raises(NotImplementedError, match="adaspa.block_scores has no backward"):
        s.sum().backward()
    with torch.no_grad():
        assert not any(t.requires_grad for t in fn(q, k, v, keep))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_with_inputs_requiring_grad(device):
    """The autograd registration itself passes opcheck's schema / registration checks."""
    require_kernels(device, "sparse_attn", torch.bfloat16, 64, 64)
    q, k, v = _grad_inputs(device)
    idx = random_idx(1, 2, 4, 4, 3, density=0.5, device=device)
    torch.library.opcheck(torch.ops.adaspa.sparse_attn.default, (q, k, v, idx, 64, None),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))

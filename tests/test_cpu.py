"""The CPU kernels beyond test_ops.py: every instruction-set build against the float64 references,
threads that cannot change a result, float32 search / scores, long odd lengths."""
import math

import pytest
import torch
import torch.nn.functional as F

import adaspa_ext as A
from adaspa_ext import reference as R
from util import (assert_within_torch_error, check_lse, floor_for, make_qkv, random_idx, token_mask_from_idx,
                  torch_same_precision_attention)

ISAS = ["portable", "avx2", "avx512"]


def use_isa(monkeypatch, isa):
    """Select a kernel build (ADASPA_CPU_ISA is read at every call); skip where the CPU lacks it."""
    monkeypatch.setenv("ADASPA_CPU_ISA", isa)
    q = torch.zeros(1, 1, 1, 64)
    try:
        A.attn_search(q, q, q)
    except ValueError as e:
        if "lacks its instructions" in str(e) or "must be one of" in str(e):
            pytest.skip(f"no {isa} build on this machine: {e}")
        raise


def check_all_ops(q, k, v, bs, density, what):
    b, h, nq, d = q.shape
    nk = k.shape[2]
    mq, mk = math.ceil(nq / bs), math.ceil(nk / bs)
    sc = d ** -0.5
    idx = random_idx(b, h, mq, mk, mk + 1, density=density)
    out, lse = A.sparse_attn(q, k, v, idx, bs)
    ref_out, ref_lse = R.sparse_attn_ref(q, k, v, idx, bs)
    yard = torch_same_precision_attention(q, k, v, token_mask_from_idx(idx, nq, nk, bs), sc)
    assert_within_torch_error(out, ref_out, yard, floor_for(q.dtype), f"{what} sparse")
    check_lse(lse, ref_lse, f"{what} sparse lse")
    out, lse, scores = A.attn_search(q, k, v, bs)
    ref_out, ref_lse, ref_scores = R.attn_search_ref(q, k, v, bs)
    assert_within_torch_error(out, ref_out, F.scaled_dot_product_attention(q, k, v), floor_for(q.dtype),
                              f"{what} search")
    check_lse(lse, ref_lse, f"{what} search lse")
    torch.testing.assert_close(scores.double(), ref_scores, rtol=2e-3, atol=1e-4 * bs)
    rows = torch.tensor([min(bs, nq - i * bs) for i in range(mq)], dtype=torch.float64)
    torch.testing.assert_close(scores.double().sum(-1), rows.expand(b, h, mq), rtol=1e-4, atol=1e-3)
    stale = (ref_lse + 0.3 * torch.randn_like(ref_lse)).float()
    got = A.block_scores(q, k, stale, bs)
    torch.testing.assert_close(got.double(), R.block_scores_ref(q, k, stale, bs), rtol=3e-3, atol=1e-4 * bs)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d,bs", [(64, 64), (128, 128)])
def test_every_build_matches_reference(monkeypatch, isa, dtype, d, bs):
    use_isa(monkeypatch, isa)
    q, k, v = make_qkv(2, 2, 333, 1000, d, dtype, "cpu", layout="bnhd")
    check_all_ops(q, k, v, bs, 0.4, f"{isa} {dtype} d={d} bs={bs}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq,bs", [(96, 64), (97, 64), (32, 64), (160, 128), (161, 128), (1, 128)])
def test_short_strips_match_reference(monkeypatch, isa, nq, bs):
    """A strip of at most 32 rows computes half of its vectors: the last query block at 32 rows
    (half), 33 rows (whole strip), a 128-row block's second strip at 32 / 33 rows, one row."""
    use_isa(monkeypatch, isa)
    q, k, v = make_qkv(2, 2, nq, 1000, 64, torch.float32, "cpu", layout="bnhd")
    check_all_ops(q, k, v, bs, 0.4, f"{isa} nq={nq} bs={bs}")


def test_builds_are_distinct(monkeypatch):
    """The switch really changes the code that runs: the portable build rounds a * b + c twice,
    the x86 builds fuse it, so their outputs differ in the last bits somewhere."""
    q, k, v = make_qkv(1, 2, 300, 500, 64, torch.float32, "cpu")
    outs = {}
    for isa in ISAS:
        monkeypatch.setenv("ADASPA_CPU_ISA", isa)
        try:
            outs[isa] = A.attn_search(q, k, v)[0]
        except ValueError:
            continue
    if len(outs) < 2:
        pytest.skip("one CPU build only on this machine")
    assert not torch.equal(outs["portable"], outs[next(i for i in outs if i != "portable")])


def test_bad_isa_name_raises(monkeypatch):
    monkeypatch.setenv("ADASPA_CPU_ISA", "sse9")
    q = torch.zeros(1, 1, 1, 64)
    with pytest.raises(ValueError, match="ADASPA_CPU_ISA must be one of .*portable.* got 'sse9'"):
        A.attn_search(q, q, q)


@pytest.mark.parametrize("bs", [64, 128])
def test_threads_do_not_change_results(bs):
    """Items are independent and each is computed the same way whichever thread takes it: one
    thread, two and more threads than cores give identical bits."""
    q, k, v = make_qkv(2, 3, 517, 777, 64, torch.float32, "cpu", layout="bnhd")
    mq, mk = math.ceil(517 / bs), math.ceil(777 / bs)
    idx = random_idx(2, 3, mq, mk, mk, density=0.5)
    before = torch.get_num_threads()

    def run():
        s_out, s_lse = A.sparse_attn(q, k, v, idx, bs)
        out, lse, scores = A.attn_search(q, k, v, bs)
        return s_out, s_lse, out, lse, scores, A.block_scores(q, k, lse, bs)

    try:
        torch.set_num_threads(1)
        one = run()
        for n in (2, 5):
            torch.set_num_threads(n)
            for a, b in zip(one, run()):
                assert torch.equal(a, b), f"{n} threads differ from 1"
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("nq,nk,d,bs", [(4097, 4099, 128, 128), (4097, 1, 64, 64), (1, 4097, 64, 64)])
def test_long_odd_lengths_float32(nq, nk, d, bs):
    """float32 over many key blocks (the online softmax's rescales add up) and the degenerate
    shapes: one key, one query."""
    q, k, v = make_qkv(1, 1, nq, nk, d, torch.float32, "cpu")
    check_all_ops(q, k, v, bs, 0.3, f"float32 nq={nq} nk={nk}")

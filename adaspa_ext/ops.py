"""Typed wrappers and fake (meta) kernels for the torch.ops.adaspa custom ops.

The schemas live in csrc/ops.cpp; each backend registers its kernel in C++. This module adds
  * fake kernels, so the ops trace under torch.compile / FakeTensor with exact output strides;
  * documented wrappers with an optional check mode that validates data-dependent values
    (index ranges and order, keep range) with a host sync and raises ValueError;
  * the kernel path of the CUDA ops (portable: the _sm80 kernels; hopper: the _sm90 kernels on
    compute capability 9.0): kernel_path() answers which one a call takes, ADASPA_KERNEL_PATH or
    use_kernel_path() forces one, compiled_tuples() lists what this build has.
Check mode is on when `check=True` is passed or ADASPA_CHECK=1 is set.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os

import torch
from torch import Tensor

from . import _build_config  # loads the library (adaspa_ext._C): registers the schemas and kernels

__all__ = ["sparse_attn", "sparse_attn_out", "attn_search", "block_scores", "select_blocks", "mask_to_idx",
           "validate_block_index",
           "num_blocks", "kernel_path", "use_kernel_path", "compiled_tuples", "SUPPORTED_BLOCK_SIZES",
           "SUPPORTED_HEAD_DIMS", "KERNEL_PATHS"]

SUPPORTED_BLOCK_SIZES = (64, 128)
SUPPORTED_HEAD_DIMS = (64, 128)
KERNEL_PATHS = ("portable", "hopper")
# The CUDA kernels each op launches on each path (csrc/cuda/attention_api.cpp, OpKernels): an op
# runs on a path only when all of them are compiled there.
_OP_KERNELS = {
    "sparse_attn": {"portable": ("flash_sparse",), "hopper": ("flash_sparse",)},
    "attn_search": {"portable": ("flash_dense", "score"), "hopper": ("flash_search",)},
    "block_scores": {"portable": ("score",), "hopper": ("score",)},
}


def num_blocks(n: int, block_size: int) -> int:
    """Blocks covering n tokens: ceil(n / block_size) (the last one may be partial)."""
    return (n + block_size - 1) // block_size


def _check_enabled(check: bool | None) -> bool:
    if check is None:
        check = os.environ.get("ADASPA_CHECK", "0") == "1"
    return bool(check) and not torch.compiler.is_compiling()


@functools.lru_cache(maxsize=None)
def _arch_supported(cc: tuple[int, int]) -> bool:
    major, minor = cc
    for a in _build_config.CUDA_ARCHS:
        ptx = a.endswith("+PTX")
        am, an = a.replace("+PTX", "").split(".")
        if an.endswith("a"):  # arch-specific targets (SASS or PTX) run only on that exact arch
            if (int(am), int(an[:-1])) == cc:
                return True
        elif int(am) == major and int(an) <= minor:  # SASS runs on later minors of its major
            return True
        elif ptx and (int(am), int(an)) <= cc:  # the driver compiles embedded PTX for newer archs
            return True
    return False


def _check_device(t: Tensor) -> None:
    if t.device.type != "cuda":
        return
    if not _build_config.WITH_CUDA:
        raise RuntimeError("adaspa_ext was built without CUDA kernels (ADASPA_BUILD_CUDA=0 or no toolkit); "
                           f"got a tensor on {t.device}. Rebuild with a CUDA toolkit to use the GPU.")
    cc = torch.cuda.get_device_capability(t.device)
    if not _arch_supported(cc):
        raise RuntimeError(
            f"adaspa_ext has no kernels for {torch.cuda.get_device_name(t.device)} (sm_{cc[0]}{cc[1]}); it was "
            f"built for TORCH_CUDA_ARCH_LIST={';'.join(_build_config.CUDA_ARCHS)}. Rebuild with "
            f"TORCH_CUDA_ARCH_LIST including {cc[0]}.{cc[1]}{'a' if cc == (9, 0) else ''}.")


def validate_block_index(idx: Tensor, mk: int, name: str = "idx") -> None:
    """Raise ValueError unless every idx row is strictly ascending entries in [0, mk) followed by
    -1 padding only. Syncs with the device."""
    if idx.numel() == 0:
        return
    i = idx.long()
    pad = i == -1
    bad_range = ~pad & ((i < 0) | (i >= mk))
    if bool(bad_range.any()):
        pos = bad_range.nonzero()[0].tolist()
        raise ValueError(f"{name}: entry {i[tuple(pos)].item()} at {pos} is outside [0, Mk={mk}) and is not -1 padding")
    pad_before_valid = pad[..., :-1] & ~pad[..., 1:]
    if bool(pad_before_valid.any()):
        pos = pad_before_valid.nonzero()[0].tolist()
        raise ValueError(f"{name}: -1 padding at {pos} is followed by a block index; padding must come last")
    not_ascending = ~pad[..., 1:] & (i[..., 1:] <= i[..., :-1])
    if bool(not_ascending.any()):
        pos = not_ascending.nonzero()[0].tolist()
        pos[-1] += 1
        raise ValueError(f"{name}: row is not strictly ascending at {pos} (duplicates or unsorted entries)")


def compiled_tuples(op: str) -> list[tuple[str, str, int, int]]:
    """(kernel path, dtype, head_dim, block_size) tuples ('bf16' / 'fp16') for which this build
    compiled every CUDA kernel of op ('sparse_attn', 'attn_search' or 'block_scores'). Whether the
    hopper ones run also needs a compute capability 9.0 device."""
    have = {tuple(t) for t in _build_config.CUDA_KERNELS}
    out = {(path, dt, d, bs) for _, path, dt, d, bs in have}
    return sorted(t for t in out if all((k, *t) in have for k in _OP_KERNELS[op][t[0]]))


def kernel_path(q: Tensor, block_size: int = 64, op: str = "sparse_attn") -> str:
    """The kernel path ('portable' or 'hopper') op would run on for q (its device, dtype and head
    dim) and block_size under the current ADASPA_KERNEL_PATH; 'cpu' for a CPU tensor. Raises what
    the call would raise when the forced path or the tuple is not compiled."""
    if q.device.type != "cuda":
        return "cpu"
    _check_device(q)
    return torch.ops.adaspa.kernel_path.default(q, block_size, op)


@contextlib.contextmanager
def use_kernel_path(path: str):
    """Run the CUDA ops of the block on one kernel path ('auto', 'portable' or 'hopper'): sets
    ADASPA_KERNEL_PATH, which every call reads, for the block (process-wide: not for threads)."""
    if path not in ("auto",) + KERNEL_PATHS:
        raise ValueError(f"kernel path must be one of auto, {', '.join(KERNEL_PATHS)}, got {path!r}")
    old = os.environ.get("ADASPA_KERNEL_PATH")
    os.environ["ADASPA_KERNEL_PATH"] = path
    try:
        yield
    finally:
        if old is None:
            del os.environ["ADASPA_KERNEL_PATH"]
        else:
            os.environ["ADASPA_KERNEL_PATH"] = old


# ---------------------------------------------------------------------------------------------
# Wrappers


def sparse_attn(q: Tensor, k: Tensor, v: Tensor, idx: Tensor, block_size: int = 64,
                scale: float | None = None, *, check: bool | None = None) -> tuple[Tensor, Tensor]:
    """Block-sparse attention: each query block attends only to the key blocks listed in idx.

    q [B, H, Nq, D], k / v [B, H, Nk, D]: fp16 / bf16 (float32 on CPU), last dim contiguous, any
    other strides (a [B, N, H, D] tensor passed as .transpose(1, 2) is read in place).
    idx int32 [B, H, Mq, Kmax], Mq = ceil(Nq / block_size): per query block the key blocks to
    visit, ascending, then -1 padding. Entries outside [0, Mk) or not above the previous visited
    entry are skipped (check mode raises on them instead).
    Returns out (like q, same memory layout) and lse float32 [B, H, Nq] (natural log). A row that
    visits no block gets out 0 and lse -inf. scale defaults to D ** -0.5.
    """
    _check_device(q)
    if _check_enabled(check):
        validate_block_index(idx, num_blocks(k.shape[2], block_size))
    return torch.ops.adaspa.sparse_attn.default(q, k, v, idx, block_size, scale)


def sparse_attn_out(q: Tensor, k: Tensor, v: Tensor, idx: Tensor, out: Tensor, block_size: int = 64,
                    scale: float | None = None, *, check: bool | None = None) -> None:
    """sparse_attn writing its output into `out` instead of a new tensor; no lse is computed
    (use sparse_attn for it).

    out: q's shape, dtype and device, contiguous last dim, any other strides (a slice of a larger
    output, e.g. the video rows of a [B, N, H, D] buffer whose text rows come from elsewhere), not
    overlapping q, k or v. Values are those sparse_attn returns. The op writes into out, so it
    has no autograd: for inputs that require grad use sparse_attn (this raises RuntimeError).
    """
    _check_device(q)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError("adaspa.sparse_attn_out writes into 'out' and has no autograd; use sparse_attn for "
                           "inputs that require grad, or call it under torch.no_grad() / torch.inference_mode()")
    if _check_enabled(check):
        validate_block_index(idx, num_blocks(k.shape[2], block_size))
    torch.ops.adaspa.sparse_attn_out.default(q, k, v, idx, out, block_size, scale)


def mask_to_idx(packed: Tensor, mk: int, width: int, text_qblocks: int = 0, text_first: bool = False) -> Tensor:
    """A packed block pattern as the idx of one sparse_attn call, in one kernel.

    packed uint8 [B, H, Mq, ceil(mk / 8)]: bit j % 8 of byte j / 8 of a row marks key block j
    (runtime.pack_block_mask's format; bits at or above mk are ignored). Returns int32
    [B, H, Mq + text_qblocks, W]: per video query block its set blocks ascending (the first
    `width`, 0 <= width <= mk), then -1; with text_qblocks > 0, W = mk and text_qblocks query
    blocks listing every key block (dense text rows) come before (text_first) or after the video
    ones. Equals runtime._with_text_lists(runtime.unpack_block_mask(packed, mk, width), mk,
    text_qblocks, text_first). No host sync (capturable in a CUDA graph).
    """
    _check_device(packed)
    return torch.ops.adaspa.mask_to_idx.default(packed, mk, width, text_qblocks, text_first)


def attn_search(q: Tensor, k: Tensor, v: Tensor, block_size: int = 64,
                scale: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Search: dense attention (out, lse) plus block scores from that lse, in one op (on CUDA two
    launches on the current stream: the dense forward, then the score pass; no L x L buffer).

    scores float32 [B, H, Mq, Mk]: S[i, j] = sum over rows r of query block i and keys c of key
    block j of exp(scale * q_r . k_c - lse_r). Each row's probabilities sum to 1, so
    scores[..., i, :].sum() equals the number of rows in block i.
    """
    _check_device(q)
    return torch.ops.adaspa.attn_search.default(q, k, v, block_size, scale)


def block_scores(q: Tensor, k: Tensor, lse: Tensor, block_size: int = 64,
                 scale: float | None = None) -> Tensor:
    """Block scores from a cached lse (float32 [B, H, Nq]), no P @ V: float32 [B, H, Mq, Mk].
    With a stale lse rows no longer sum exactly to 1; consumers normalise per row."""
    _check_device(q)
    return torch.ops.adaspa.block_scores.default(q, k, lse, block_size, scale)


def select_blocks(scores: Tensor, keep: Tensor, forced_kv: Tensor | None = None, *,
                  check: bool | None = None) -> tuple[Tensor, Tensor]:
    """Row-wise top-k block selection.

    scores float32 [B, H, Mq, Mk]; keep int32 [H]: non-forced blocks each row keeps (clamped to the
    number of non-forced blocks; values outside [0, Mk] raise when keep is on the CPU or in check
    mode); forced_kv bool [Mk] (optional): blocks kept in every row (the text sink). keep and
    forced_kv may live on the CPU or on scores' device.
    Returns idx int32 [B, H, Mq, Mk] (kept blocks ascending, then -1) and kept_mass float32
    [B, H, Mq], the share of the row's total score held by the kept blocks.
    """
    _check_device(scores)
    if _check_enabled(check) and keep.numel():
        lo, hi = int(keep.min()), int(keep.max())
        if lo < 0 or hi > scores.shape[-1]:
            raise ValueError(f"keep: values must lie in [0, Mk={scores.shape[-1]}], got min {lo} max {hi}")
    return torch.ops.adaspa.select_blocks.default(scores, keep, forced_kv)


# ---------------------------------------------------------------------------------------------
# Fake kernels: shapes, dtypes and strides exactly as the real kernels produce them.


def _fake_qkv_checks(op: str, q: Tensor, k: Tensor, block_size: int) -> None:
    torch._check(q.dim() == 4 and k.dim() == 4, lambda: f"adaspa.{op}: q and k must be 4-D [B, H, N, D]")
    torch._check(block_size in SUPPORTED_BLOCK_SIZES,
                 lambda: f"adaspa.{op}: block_size must be one of {{64, 128}}, got {block_size}")


@torch.library.register_fake("adaspa::sparse_attn")
def _sparse_attn_fake(q, k, v, idx, block_size=64, scale=None):
    _fake_qkv_checks("sparse_attn", q, k, block_size)
    b, h, nq, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, h, nq), dtype=torch.float32)


@torch.library.register_fake("adaspa::sparse_attn_out")
def _sparse_attn_out_fake(q, k, v, idx, out, block_size=64, scale=None):
    _fake_qkv_checks("sparse_attn_out", q, k, block_size)


@torch.library.register_fake("adaspa::mask_to_idx")
def _mask_to_idx_fake(packed, mk, width, text_qblocks=0, text_first=False):
    torch._check(packed.dim() == 4, lambda: "adaspa.mask_to_idx: 'packed' must be 4-D [B, H, Mq, ceil(mk / 8)]")
    b, h, mq, _ = packed.shape
    return packed.new_empty((b, h, mq + text_qblocks, mk if text_qblocks > 0 else width), dtype=torch.int32)


@torch.library.register_fake("adaspa::attn_search")
def _attn_search_fake(q, k, v, block_size=64, scale=None):
    _fake_qkv_checks("attn_search", q, k, block_size)
    b, h, nq, _ = q.shape
    mq, mk = num_blocks(nq, block_size), num_blocks(k.shape[2], block_size)
    return (torch.empty_like(q), q.new_empty((b, h, nq), dtype=torch.float32),
            q.new_empty((b, h, mq, mk), dtype=torch.float32))


@torch.library.register_fake("adaspa::block_scores")
def _block_scores_fake(q, k, lse, block_size=64, scale=None):
    _fake_qkv_checks("block_scores", q, k, block_size)
    b, h, nq, _ = q.shape
    return q.new_empty((b, h, num_blocks(nq, block_size), num_blocks(k.shape[2], block_size)), dtype=torch.float32)


@torch.library.register_fake("adaspa::select_blocks")
def _select_blocks_fake(scores, keep, forced_kv=None):
    torch._check(scores.dim() == 4, lambda: "adaspa.select_blocks: scores must be 4-D [B, H, Mq, Mk]")
    b, h, mq, mk = scores.shape
    return scores.new_empty((b, h, mq, mk), dtype=torch.int32), scores.new_empty((b, h, mq), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Autograd: the ops are forward-only. Inputs that require grad are accepted (the forward runs and
# its outputs carry a grad_fn), and asking for a gradient raises NotImplementedError naming the op.
# The error is raised by `adaspa::no_backward` at run time, not while a backward is traced, so
# torch.compile of a forward whose inputs require grad still compiles and runs.

_FORWARD_ONLY = ("adaspa.{op} has no backward: the adaspa ops are forward-only (inference). Run them under "
                 "torch.no_grad() / torch.inference_mode(), or pass tensors that do not require grad.")


@torch.library.custom_op("adaspa::no_backward", mutates_args=())
def _no_backward(grad: Tensor, like: Tensor, op: str) -> Tensor:
    """Stands in for the gradient of `like` w.r.t. an adaspa op's input; always raises."""
    raise NotImplementedError(_FORWARD_ONLY.format(op=op))


@_no_backward.register_fake
def _no_backward_fake(grad, like, op):
    return torch.empty_like(like)


def _register_forward_only(op: str, differentiable: tuple[int, ...]) -> None:
    """Autograd kernel for adaspa::op whose backward raises; `differentiable` are the positions of
    the floating-point tensor inputs (the ones a gradient could be asked for)."""

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*(inputs[i] for i in differentiable))
        ctx.n_inputs = len(inputs)

    def backward(ctx, *grads):
        g = next(g for g in grads if g is not None)
        out = [None] * ctx.n_inputs
        for i, like in zip(differentiable, ctx.saved_tensors):
            out[i] = torch.ops.adaspa.no_backward(g, like, op)
        return tuple(out)

    torch.library.register_autograd(f"adaspa::{op}", backward, setup_context=setup_context)


_register_forward_only("sparse_attn", (0, 1, 2))
_register_forward_only("attn_search", (0, 1, 2))
_register_forward_only("block_scores", (0, 1, 2))
_register_forward_only("select_blocks", (0,))

"""scft_attention: SCFT's one-head attention with a residual, out = residual + softmax(q k^T * scale) v.

SCFT (Lee et al., CVPR 2020) lets every sketch feature cell attend to every reference cell with
features that concatenate all encoder levels, so the head dimension is large (992 in the paper)
and there is a single head: a regime where torch's flash and cuDNN SDPA backends refuse the head
size and fall back to slower paths.

Backends:
    "reference": the naive path: S = q k^T, softmax(scale * S) in float32 (float64 stays float64),
        then P v + residual; autograd. Its attention map (return_attention=True) is differentiable.
    "cpp" (C++ CPU, float32/float64) and "cuda" (CUDA C++, float16/bfloat16/float32/float64,
        float32 accumulation): csrc/scft_attention. The six GEMMs (two forward, four backward) are
        torch's BLAS / cuBLAS; a fused in-place softmax and a fused dS = scale P (dP - rowsum(P dP))
        pass are refcolor's. One (B, N, M) matrix (P) stays alive from the forward to the end of
        the backward, which forms dS block by block in a bounded scratch (the cpp file says why
        not a flash-style kernel); without autograd the cpp forward holds P only block by block.
        Gradients come back in the strides of their inputs (dense layouts: transposed, permuted,
        channels-last views), the output in the residual's, so no layout costs a copy; the GEMMs
        read strided operands as they are.
    "sdpa": torch.nn.functional.scaled_dot_product_attention on one head (torch picks its kernel),
        plus the residual.
    "triton": refcolor.kernels.scft_attention (two implementations, "gemm" and "flash", chosen by
        REFCOLOR_SCFT_IMPL; see that module for the design). CUDA tensors, or CPU tensors under
        TRITON_INTERPRET=1 (tests only).
The compiled and Triton backends run through the custom ops `refcolor::scft_attention` /
`refcolor::scft_attention_backward` (fake implementations and registered autograd, so the op works
under torch.compile).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor import _extension
from refcolor.backends import choose_backend, compare_with_reference, register_self_check
from refcolor.ops import _validation as check

OP = "scft_attention"
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = {
    "reference": _ALL_FLOATS,
    "cpp": (torch.float32, torch.float64),
    "cuda": _ALL_FLOATS,
    "sdpa": _ALL_FLOATS,
    "triton": _ALL_FLOATS,
}
# Backends that materialise the attention map P (return_attention=True); for Triton, its "gemm" impl.
MAP_BACKENDS = ("reference", "cpp", "cuda", "triton")

# Auto order, fastest first. CPU: `python -m benchmarks.cpu_scft_attention --repeats 7` on this
# project's 2-core CPU (torch 2.13, float32, residual; shared with other jobs, so the methods run in
# interleaved rounds and each figure is the median ratio to the time of the six GEMMs alone):
#   forward + backward, glibc malloc / tcmalloc:
#     B=16 N=M=256 d=992 (paper):  cpp 0.99 / 0.92, reference 1.31 / 1.25, sdpa 1.26 / 1.30
#     B=2 N=M=4096 d=256:          cpp 1.25 / 1.06, reference 1.44 / 1.08, sdpa 1.13 / 1.16
#     B=4 N=M=1024 d=64:           cpp 1.00 / 0.96, reference 1.58 / 1.28, sdpa 1.12 / 1.34
#     B=4 N=M=1024 d=512:          cpp 0.99 / 1.02, reference 1.12 / 1.16, sdpa 1.21 / 1.26
#   forward alone (no autograd), same order of shapes: cpp 0.96 / 0.90, 1.14 / 1.14, 1.15 / 1.11,
#     1.09 / 1.07; sdpa 1.06 / 1.09, 0.98 / 1.00, 1.47 / 1.43, 1.15 / 1.08; reference 1.38 / 1.46,
#     1.62 / 1.07, 1.80 / 2.08, 1.33 / 1.29.
# (Below 1.0: the floor's batched GEMMs are multithreaded by MKL, cpp runs one single-threaded GEMM
# per block of rows, which on this busy machine waits less on thread barriers.) So cpp first with
# and without autograd; without it sdpa (which never forms the N x M matrix) is next, and was
# faster only at N = M = 4096; with autograd the reference is next (sdpa's CPU backward recomputes
# the attention).
# CUDA: the compiled kernels first, as for the other ops (refcolor.backends), then Triton, until
# benchmarks/gpu_scft_attention.py is run on a GPU and says otherwise.
PREFERENCE = {"cpu": ("cpp", "reference", "sdpa"), "cuda": ("cuda", "triton", "sdpa", "reference")}
PREFERENCE_NO_GRAD = {**PREFERENCE, "cpu": ("cpp", "sdpa", "reference")}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def scft_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, residual: Tensor | None = None, scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """The naive path with autograd -> (out (B, N, dv), attention (B, N, M) in float32, float64
    for float64 inputs). 16-bit inputs: the logits come out of the matmul in the input dtype (as in
    any 16-bit GEMM), the softmax runs in float32 and P is rounded to the input dtype for P v."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.bmm(q, k.transpose(1, 2)).to(_compute_dtype(q.dtype)) * scale
    attention = torch.softmax(logits, dim=-1)
    probs = attention.to(v.dtype)
    out = torch.bmm(probs, v) if residual is None else torch.baddbmm(residual, probs, v)
    return out, attention


def _sdpa(q: Tensor, k: Tensor, v: Tensor, residual: Tensor | None, scale: float) -> Tensor:
    out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale).squeeze(1)
    return out if residual is None else out + residual


# ----------------------------------------------------------------------------- custom ops
# `impl` names the implementation: "cpp" / "cuda" (the compiled kernels, dispatched by device) or
# Triton's "gemm" / "flash".
COMPILED_IMPLS = ("cpp", "cuda")


def _kernels():
    from refcolor.kernels import scft_attention as triton_kernels

    return triton_kernels


def _compiled_ops():
    _extension.compiled_module()  # registers the kernels with the dispatcher
    return torch.ops.refcolor


@torch.library.custom_op("refcolor::scft_attention", mutates_args=())
def _scft_attention_op(
    q: Tensor, k: Tensor, v: Tensor, residual: Tensor | None, scale: float, impl: str, keep_probs: bool = True
) -> tuple[Tensor, Tensor]:
    """-> out (B, N, dv) and, for the backward, the probabilities P (B, N, M) in the input dtype
    (an empty tensor for "flash", whose backward recomputes them, and for the compiled kernels when
    keep_probs is false: no backward will run, and the CPU kernel then keeps P block by block only)."""
    if impl in COMPILED_IMPLS:
        out, probs = _compiled_ops().scft_attention_forward_kernel(q, k, v, residual, scale, keep_probs)
        return out, probs
    return _kernels().attention_forward(q, k, v, residual, scale, impl)


@_scft_attention_op.register_fake
def _(q, k, v, residual, scale, impl, keep_probs=True):
    B, N, _ = q.shape
    M, dv = v.shape[1], v.shape[2]
    if impl in COMPILED_IMPLS and residual is not None:
        out = torch.empty_like(residual, memory_format=torch.preserve_format)  # the residual's strides
    else:
        out = q.new_empty((B, N, dv))
    no_probs = impl == "flash" or (impl in COMPILED_IMPLS and not keep_probs)
    return out, q.new_empty((0,) if no_probs else (B, N, M))


@torch.library.custom_op("refcolor::scft_attention_backward", mutates_args=())
def _scft_attention_backward_op(
    grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, probs: Tensor, scale: float, impl: str
) -> tuple[Tensor, Tensor, Tensor]:
    if impl in COMPILED_IMPLS:
        grad_q, grad_k, grad_v = _compiled_ops().scft_attention_backward_kernel(grad_out, q, k, v, probs, scale)
        return grad_q, grad_k, grad_v
    return _kernels().attention_backward(grad_out.contiguous(), q, k, v, probs, scale)


@_scft_attention_backward_op.register_fake
def _(grad_out, q, k, v, probs, scale, impl):
    if impl in COMPILED_IMPLS:  # the inputs' strides (dense layouts), as the kernels return them
        like = [torch.empty_like(t, memory_format=torch.preserve_format) for t in (q, k, v)]
        return like[0], like[1], like[2]
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, residual, scale, impl, _ = inputs
    ctx.save_for_backward(q, k, v, output[1])
    ctx.scale, ctx.impl, ctx.has_residual = scale, impl, residual is not None
    # probs never gets a gradient: without this, autograd would hand the backward a (B, N, M)
    # matrix of zeros for it (measured: +128 MB at B=2, N=M=4096).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_out, grad_probs):
    # probs is an internal output (never returned to users): its gradient is unused.
    q, k, v, probs = ctx.saved_tensors
    if grad_out is None:  # not materialised (see _setup_context): out did not reach the loss
        return None, None, None, None, None, None, None
    grad_q, grad_k, grad_v = _scft_attention_backward_op(grad_out, q, k, v, probs, ctx.scale, ctx.impl)
    # d out / d residual is the identity.
    return grad_q, grad_k, grad_v, grad_out if ctx.has_residual else None, None, None, None


_scft_attention_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- front


def validate_inputs(q, k, v, residual, scale) -> float:
    """Check the arguments of scft_attention; returns the scale (default 1/sqrt(d))."""
    check.check_float_tensor(OP, "q", q, 3, "(B, N, d)")
    check.check_float_tensor(OP, "k", k, 3, "(B, M, d)")
    check.check_float_tensor(OP, "v", v, 3, "(B, M, dv)")
    named = [("k", k), ("v", v)]
    if residual is not None:
        check.check_float_tensor(OP, "residual", residual, 3, "(B, N, dv)")
        named.append(("residual", residual))
    for name, value in named:
        check.check_same_device(OP, name, value, "q", q)
        check.check_same_dtype(OP, name, value, "q", q)
    check.check_dims_match(OP, "k", k, "(B, M, d)", "q", q, dims=(0, 2))
    check.check_dims_match(OP, "v", v, "(B, M, dv)", "k", k, dims=(0, 1))
    if residual is not None and residual.shape != (q.shape[0], q.shape[1], v.shape[2]):
        raise ValueError(
            f"{OP}: argument 'residual' must have shape (B, N, dv) = {(q.shape[0], q.shape[1], v.shape[2])} "
            f"(from 'q' {tuple(q.shape)} and 'v' {tuple(v.shape)}), got {tuple(residual.shape)}"
        )
    check.check_nonempty(OP, "q", q, "(B, N, d)")
    check.check_nonempty(OP, "k", k, "(B, M, d)")
    check.check_nonempty(OP, "v", v, "(B, M, dv)")
    if scale is None:
        return 1.0 / math.sqrt(q.shape[-1])
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"{OP}: argument 'scale' must be a finite real number or None, got {scale!r}")
    return float(scale)


def scft_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    residual: Tensor | None = None,
    *,
    scale: float | None = None,
    backend: str = "auto",
    return_attention: bool = False,
):
    """residual + softmax(q k^T * scale) v, SCFT's attention (one head, any head dimension).

    Args:
        q: (B, N, d) queries; k: (B, M, d) keys; v: (B, M, dv) values; residual: (B, N, dv) or
            None. One floating dtype and device for all; any N, M, d, dv >= 1. float32/float64
            everywhere, float16/bfloat16 on the GPU (softmax and accumulation in float32).
        scale: the logit scale, default 1 / sqrt(d).
        backend: "auto", "reference", "cpp", "cuda", "sdpa" or "triton" (see refcolor.backends).
            The auto order is measured (PREFERENCE with gradients, PREFERENCE_NO_GRAD without).
        return_attention: also return the attention map P = softmax(scale q k^T), computed by the
            chosen backend. Only the backends that materialise P can: "reference", "cpp", "cuda"
            and "triton" (its "gemm" implementation, whatever REFCOLOR_SCFT_IMPL says); "auto"
            picks the first of these in its order, and an explicit "sdpa" is an error. The map is
            differentiable with the reference backend; the others return a detached copy (it is
            for inspection: their backward formula covers `out` only).

    Returns:
        out (B, N, dv), differentiable with respect to q, k, v and residual; with
        return_attention=True, (out, attention (B, N, M)), rows summing to 1, float32 (float64 for
        float64 inputs).
    """
    scale = validate_inputs(q, k, v, residual, scale)
    records_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, residual))
    preference = PREFERENCE if records_grad else PREFERENCE_NO_GRAD
    if return_attention:
        preference = {device: tuple(b for b in order if b in MAP_BACKENDS) for device, order in preference.items()}
        if backend == "sdpa":
            raise ValueError(
                f"{OP}: backend 'sdpa' cannot return the attention map (torch's kernels never materialise it); "
                f"use one of {MAP_BACKENDS} or return_attention=False"
            )
    chosen = choose_backend(OP, backend, q.device, q.dtype, DTYPES, preference=preference)
    if chosen == "reference":
        out, attention = scft_attention_reference(q, k, v, residual, scale)
        return (out, attention) if return_attention else out
    if chosen == "sdpa":
        return _sdpa(q, k, v, residual, scale)
    if chosen in COMPILED_IMPLS:
        impl = chosen
    else:
        impl = "gemm" if return_attention else _kernels().selected_impl()
    out, probs = _scft_attention_op(q, k, v, residual, scale, impl, records_grad or return_attention)
    if not return_attention:
        return out
    # A copy: the backward overwrites the op's P with the logits' gradient.
    return out, probs.detach().to(_compute_dtype(probs.dtype), copy=True)


def _self_check(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """The GPU first-use check (refcolor.backends): small q, k, v, residual against the reference."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 8, 16), (2, 12, 16), (2, 12, 8), (2, 8, 8)]
    inputs = [torch.randn(s, generator=gen).to(device=device, dtype=dtype) for s in shapes]
    return compare_with_reference(
        lambda q, k, v, r, backend: scft_attention(q, k, v, r, backend=backend), inputs, backend, dtype
    )


register_self_check(OP, _self_check)


__all__ = ["scft_attention", "scft_attention_reference"]

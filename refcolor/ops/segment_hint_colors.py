"""segment_hint_colors: GuidingPainter's hint generation (Cho et al. 2022, Eq. 4-8).

Given soft or one-hot segments S (B, Nc, H, W), an image Y (B, C, H, W) and a hint count Nh per
sample, the first Nh segments are painted with their mean colour:

    m_i = [i < Nh]      Np_i = sum_j S_i(j)      c_i = sum_j S_i(j) Y(j) / Np_i  if Np_i >= 1 else 0
    hints = sum_i m_i c_i S_i  (B, C, H, W)       mask = sum_i m_i S_i  (B, 1, H, W)

Backends: "reference" (pure PyTorch with autograd, the ground truth), "cpp" (csrc/.../cpu),
"cuda" (csrc/.../cuda), "triton" (refcolor.kernels.segment_hint_colors). The compiled and Triton
paths run through the custom op `refcolor::segment_hint_colors`, which has a fake implementation
and a registered autograd formula, so the op works under torch.compile.

Layouts: the kernels read every tensor through its strides, so contiguous, channels-last (e.g.
`one_hot(labels, Nc).permute(0, 3, 1, 2)`), permuted and sliced inputs cost no copy. `hints` comes
back in the image's memory format, `mask` contiguous, and each gradient in its input's layout
(torch.empty_like's rule: channels-last in, channels-last out).
"""

from __future__ import annotations

import torch
from torch import Tensor

from refcolor import _extension
from refcolor.backends import choose_backend, compare_with_reference, register_self_check
from refcolor.ops import _validation as check

OP = "segment_hint_colors"
_FLOATS = (torch.float32, torch.float64)
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = {"reference": _ALL_FLOATS, "cpp": _FLOATS, "cuda": _ALL_FLOATS, "triton": _ALL_FLOATS}


def segment_hint_colors_reference(segments: Tensor, image: Tensor, num_hints: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 4-8 in plain PyTorch (einsum), differentiable by autograd. num_hints: int64 (B,)."""
    num_segments = segments.shape[1]
    active = (torch.arange(num_segments, device=segments.device) < num_hints[:, None]).to(segments.dtype)
    counts = segments.sum(dim=(2, 3))
    sums = torch.einsum("bihw,bchw->bic", segments, image)
    filled = counts >= 1
    # The safe denominator keeps empty segments' gradients finite (where() would pass NaN * 0).
    colors = torch.where(filled[..., None], sums / torch.where(filled, counts, 1)[..., None], 0)
    colors = colors * active[..., None]
    hints = torch.einsum("bic,bihw->bchw", colors, segments)
    mask = torch.einsum("bi,bihw->bhw", active, segments).unsqueeze(1)
    return hints, mask


def _kernels(backend: str):
    """(forward, backward) implementations of a non-reference backend."""
    if backend == "triton":
        from refcolor.kernels import segment_hint_colors as triton_kernels

        return triton_kernels.segment_hint_colors_forward, triton_kernels.segment_hint_colors_backward
    if backend in ("cpp", "cuda"):
        _extension.compiled_module()  # registers the kernels with the dispatcher
        ops = torch.ops.refcolor
        return ops.segment_hint_colors_forward_kernel, ops.segment_hint_colors_backward_kernel
    raise ValueError(f"{OP}: no kernels for backend {backend!r}")


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("refcolor::segment_hint_colors", mutates_args=())
def _segment_hint_colors_op(
    segments: Tensor, image: Tensor, num_hints: Tensor, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> hints, mask, and for the backward the masked mean colours (B, Nc, C) and counts (B, Nc)."""
    forward, _ = _kernels(backend)
    hints, mask, colors, counts = forward(segments, image, num_hints)
    return hints, mask, colors, counts


@_segment_hint_colors_op.register_fake
def _(segments, image, num_hints, backend):
    B, Nc, H, W = segments.shape
    C = image.shape[1]
    acc = _accumulate_dtype(segments.dtype)
    # Layouts as the kernels return them: hints in the image's memory format (channels-last in,
    # channels-last out), mask (B, 1, H, W) contiguous.
    return (
        torch.empty_like(image),
        segments.new_empty((B, 1, H, W)),
        segments.new_empty((B, Nc, C), dtype=acc),
        segments.new_empty((B, Nc), dtype=acc),
    )


@torch.library.custom_op("refcolor::segment_hint_colors_backward", mutates_args=())
def _segment_hint_colors_backward_op(
    grad_hints: Tensor,
    grad_mask: Tensor,
    segments: Tensor,
    image: Tensor,
    num_hints: Tensor,
    colors: Tensor,
    counts: Tensor,
    backend: str,
) -> tuple[Tensor, Tensor]:
    _, backward = _kernels(backend)
    grad_segments, grad_image = backward(grad_hints, grad_mask, segments, image, num_hints, colors, counts)
    return grad_segments, grad_image


@_segment_hint_colors_backward_op.register_fake
def _(grad_hints, grad_mask, segments, image, num_hints, colors, counts, backend):
    # Each gradient in its input's layout (torch.empty_like's preserve_format, as the kernels).
    return torch.empty_like(segments), torch.empty_like(image)


def _setup_context(ctx, inputs, output):
    segments, image, num_hints, backend = inputs
    _, _, colors, counts = output
    ctx.save_for_backward(segments, image, num_hints, colors, counts)
    ctx.backend = backend


def _backward(ctx, grad_hints, grad_mask, grad_colors, grad_counts):
    # colors and counts are internal outputs (never returned to users), so their gradients are unused.
    segments, image, num_hints, colors, counts = ctx.saved_tensors
    B, _, H, W = segments.shape
    if grad_hints is None:
        grad_hints = image.new_zeros(B, image.shape[1], H, W)
    if grad_mask is None:
        grad_mask = segments.new_zeros(B, 1, H, W)
    grad_segments, grad_image = _segment_hint_colors_backward_op(
        grad_hints, grad_mask, segments, image, num_hints, colors, counts, ctx.backend
    )
    return grad_segments, grad_image, None, None


_segment_hint_colors_op.register_autograd(_backward, setup_context=_setup_context)


def validate_inputs(segments, image, num_hints) -> Tensor:
    """Check the arguments of segment_hint_colors; returns num_hints as int64 (B,) on the device."""
    check.check_float_tensor(OP, "segments", segments, 4, "(B, Nc, H, W)")
    check.check_float_tensor(OP, "image", image, 4, "(B, C, H, W)")
    check.check_same_device(OP, "image", image, "segments", segments)
    check.check_same_dtype(OP, "image", image, "segments", segments)
    check.check_dims_match(OP, "image", image, "(B, C, H, W)", "segments", segments, dims=(0, 2, 3))
    check.check_nonempty(OP, "segments", segments, "(B, Nc, H, W)")
    check.check_nonempty(OP, "image", image, "(B, C, H, W)")
    return check.batch_counts(OP, "num_hints", num_hints, segments.shape[0], 0, segments.shape[1], segments.device)


def segment_hint_colors(segments: Tensor, image: Tensor, num_hints, *, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Paint the first `num_hints` segments of each sample with their mean colour in `image`.

    Args:
        segments: (B, Nc, H, W) float, soft or one-hot region maps in priority order.
        image: (B, C, H, W) float, same dtype and device; the ground-truth colours.
        num_hints: int, sequence of ints, or integer tensor (B,): Nh per sample, 0 <= Nh <= Nc.
        backend: "auto", "reference", "cpp", "cuda" or "triton" (see refcolor.backends).

    Returns:
        hints (B, C, H, W) and mask (B, 1, H, W), differentiable with respect to segments and image.
        An empty segment (sum of its weights below 1) gets colour 0 and passes no gradient through
        its mean. float16/bfloat16 run on the GPU backends (and the reference) with float32 sums.
    """
    num_hints = validate_inputs(segments, image, num_hints)
    chosen = choose_backend(OP, backend, segments.device, segments.dtype, DTYPES)
    if chosen == "reference":
        return segment_hint_colors_reference(segments, image, num_hints)
    hints, mask, _, _ = _segment_hint_colors_op(segments, image, num_hints, chosen)
    return hints, mask


def _self_check(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """The GPU first-use check (refcolor.backends): soft segments of 2 samples (2 and 4 of 4 hints)
    against the reference."""
    gen = torch.Generator().manual_seed(0)
    segments = torch.softmax(4 * torch.randn(2, 4, 6, 5, generator=gen), dim=1).to(device=device, dtype=dtype)
    image = torch.rand(2, 3, 6, 5, generator=gen).to(device=device, dtype=dtype)
    num_hints = torch.tensor([2, 4], device=device)
    return compare_with_reference(
        lambda s, y, n, backend: segment_hint_colors(s, y, n, backend=backend),
        [segments, image, num_hints],
        backend,
        dtype,
    )


register_self_check(OP, _self_check)

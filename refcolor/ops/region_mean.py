"""region_mean: each pixel's region mean colour over an int64 label map (the label-map form of
segment_hint_colors, for the hundreds of regions of `line_regions` that no dense (B, Nc, H, W)
segment map holds).

For an image Y (B, C, H, W), labels L (B, H, W) in [0, R) and optional pixel weights w (B, 1, H, W)
(default 1):

    W_r = sum_{j: L(j) = r} w(j)      mean_r = sum_{j: L(j) = r} w(j) Y(j) / W_r   if W_r > 0, else 0
    painted(j) = mean_{L(j)}          (B, C, H, W)

Differentiable with respect to the image and the weights. Weights let a caller leave pixels out of
the mean (w = 0 on the sketch's lines) while still painting them.

Backends: "reference" (torch.Tensor.scatter_reduce, the ground truth), "cpp" (csrc/region_mean/cpu,
deterministic: per-tile sums added in a fixed order), "cuda" (csrc/region_mean/cuda) and "triton"
(refcolor.kernels.region_mean). The compiled and Triton paths run through the custom op
`refcolor::region_mean`, which has a fake implementation and a registered autograd formula, so the
op works under torch.compile.

Determinism: the CUDA and Triton reductions add with float atomics, whose order varies from run to
run. Under torch.use_deterministic_algorithms(True), backend="auto" on CUDA takes the reference
(torch's scatter_reduce, deterministic in that mode), and an explicit "cuda" or "triton" raises
(or warns, with warn_only=True), as torch's own nondeterministic ops do.

Layouts: the kernels read every tensor through its strides (contiguous, channels-last, sliced: no
copies); `painted` and the image gradient come back in the image's memory format.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from refcolor import _extension
from refcolor.backends import choose_backend, compare_with_reference, register_self_check
from refcolor.ops import _validation as check

OP = "region_mean"
_FLOATS = (torch.float32, torch.float64)
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = {"reference": _ALL_FLOATS, "cpp": _FLOATS, "cuda": _ALL_FLOATS, "triton": _ALL_FLOATS}
# Backends whose CUDA reduction adds with float atomics (run-to-run differences in the last bits).
_ATOMIC_ON_CUDA = ("cuda", "triton")


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def region_mean_reference(
    image: Tensor, labels: Tensor, num_regions: int, weight: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """-> painted (B, C, H, W), means (B, R, C) and weight sums (B, R), by scatter_reduce."""
    B, C, H, W = image.shape
    acc = _accumulate_dtype(image.dtype)
    pixels = image.to(acc).reshape(B, C, H * W).transpose(1, 2)  # (B, HW, C)
    w = torch.ones(B, H * W, dtype=acc, device=image.device) if weight is None else weight.to(acc).reshape(B, H * W)
    index = labels.reshape(B, H * W)
    sums = pixels.new_zeros(B, num_regions, C).scatter_reduce(
        1, index[..., None].expand(B, H * W, C), pixels * w[..., None], reduce="sum"
    )
    totals = w.new_zeros(B, num_regions).scatter_reduce(1, index, w, reduce="sum")
    filled = totals > 0
    # The safe denominator keeps empty regions' gradients finite (where() would pass NaN * 0).
    means = torch.where(filled[..., None], sums / torch.where(filled, totals, 1)[..., None], 0)
    painted = means.gather(1, index[..., None].expand(B, H * W, C)).transpose(1, 2).reshape(B, C, H, W)
    return painted.to(image.dtype), means.to(image.dtype), totals


def _kernels(backend: str):
    """(forward, backward) implementations of a non-reference backend."""
    if backend == "triton":
        from refcolor.kernels import region_mean as triton_kernels

        return triton_kernels.region_mean_forward, triton_kernels.region_mean_backward
    if backend in ("cpp", "cuda"):
        _extension.compiled_module()  # registers the kernels with the dispatcher
        ops = torch.ops.refcolor
        return ops.region_mean_forward_kernel, ops.region_mean_backward_kernel
    raise ValueError(f"{OP}: no kernels for backend {backend!r}")


@torch.library.custom_op("refcolor::region_mean", mutates_args=())
def _region_mean_op(
    image: Tensor, labels: Tensor, weight: Tensor | None, num_regions: int, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    """-> painted (image dtype), means (B, R, C) and weight totals (B, R) in the accumulator dtype."""
    forward, _ = _kernels(backend)
    painted, means, totals = forward(image, labels, weight, num_regions)
    return painted, means, totals


@_region_mean_op.register_fake
def _(image, labels, weight, num_regions, backend):
    B, C = image.shape[:2]
    acc = _accumulate_dtype(image.dtype)
    # painted in the image's memory format (channels-last in, channels-last out), as the kernels.
    return (
        torch.empty_like(image),
        image.new_empty((B, num_regions, C), dtype=acc),
        image.new_empty((B, num_regions), dtype=acc),
    )


@torch.library.custom_op("refcolor::region_mean_backward", mutates_args=())
def _region_mean_backward_op(
    grad_painted: Tensor,
    grad_means: Tensor | None,
    image: Tensor,
    labels: Tensor,
    weight: Tensor | None,
    means: Tensor,
    totals: Tensor,
    weight_grad: bool,
    backend: str,
) -> tuple[Tensor, Tensor]:
    """-> grad_image, and grad_weight (an empty tensor unless weight_grad)."""
    _, backward = _kernels(backend)
    grad_image, grad_weight = backward(grad_painted, grad_means, image, labels, weight, means, totals, weight_grad)
    return grad_image, grad_weight


@_region_mean_backward_op.register_fake
def _(grad_painted, grad_means, image, labels, weight, means, totals, weight_grad, backend):
    grad_weight = torch.empty_like(weight) if weight is not None and weight_grad else image.new_empty((0,))
    return torch.empty_like(image), grad_weight


def _setup_context(ctx, inputs, output):
    image, labels, weight, _, backend = inputs
    _, means, totals = output
    ctx.save_for_backward(image, labels, weight, means, totals)
    ctx.backend = backend


def _backward(ctx, grad_painted, grad_means, grad_totals):
    # totals is an internal output (never returned to users): its gradient is unused.
    image, labels, weight, means, totals = ctx.saved_tensors
    if grad_painted is None:
        grad_painted = torch.zeros_like(image)
    weight_grad = weight is not None and ctx.needs_input_grad[2]
    grad_image, grad_weight = _region_mean_backward_op(
        grad_painted, grad_means, image, labels, weight, means, totals, weight_grad, ctx.backend
    )
    return grad_image, None, grad_weight if weight_grad else None, None, None


_region_mean_op.register_autograd(_backward, setup_context=_setup_context)


def _check_deterministic(backend: str, device: torch.device) -> None:
    """torch's rule for nondeterministic ops: an error under use_deterministic_algorithms(True),
    a warning with warn_only=True."""
    if device.type != "cuda" or backend not in _ATOMIC_ON_CUDA or not torch.are_deterministic_algorithms_enabled():
        return
    message = (
        f"{OP}: backend {backend!r} sums regions with float atomicAdd on CUDA, which is not deterministic, and "
        "torch.use_deterministic_algorithms(True) is set; use backend='auto' or 'reference' (deterministic)"
    )
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, stacklevel=3)
    else:
        raise RuntimeError(message)


def validate_inputs(image, labels, num_regions, weight) -> int:
    """Check the arguments; returns num_regions (labels.max() + 1 when None)."""
    check.check_float_tensor(OP, "image", image, 4, "(B, C, H, W)")
    check.check_nonempty(OP, "image", image, "(B, C, H, W)")
    if not isinstance(labels, Tensor):
        raise TypeError(f"{OP}: argument 'labels' must be a torch.Tensor (B, H, W), got {type(labels).__name__}")
    if labels.dtype != torch.int64:
        raise TypeError(f"{OP}: argument 'labels' must have dtype int64, got {str(labels.dtype).replace('torch.', '')}")
    if labels.dim() != 3 or labels.shape != (image.shape[0], image.shape[2], image.shape[3]):
        B, _, H, W = image.shape
        raise ValueError(f"{OP}: argument 'labels' must have shape (B, H, W) = {(B, H, W)}, got {tuple(labels.shape)}")
    check.check_same_device(OP, "labels", labels, "image", image)
    if weight is not None:
        check.check_float_tensor(OP, "weight", weight, 4, "(B, 1, H, W)")
        check.check_same_device(OP, "weight", weight, "image", image)
        check.check_same_dtype(OP, "weight", weight, "image", image)
        if weight.shape != (image.shape[0], 1, image.shape[2], image.shape[3]):
            raise ValueError(
                f"{OP}: argument 'weight' must have shape (B, 1, H, W) = "
                f"{(image.shape[0], 1, image.shape[2], image.shape[3])}, got {tuple(weight.shape)}"
            )
    if num_regions is None:
        return int(labels.max()) + 1
    if isinstance(num_regions, bool) or not isinstance(num_regions, int) or num_regions < 1:
        raise ValueError(f"{OP}: argument 'num_regions' must be an int >= 1 or None, got {num_regions!r}")
    if not torch.compiler.is_compiling():
        # One pass over the labels (min() then max() would read them twice). torch's reduction
        # copies labels that are not dense (slices) first.
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= num_regions:
            raise ValueError(
                f"{OP}: argument 'labels' must be in [0, {num_regions - 1}] (num_regions={num_regions}), "
                f"got values in [{low}, {high}]"
            )
    return num_regions


def region_mean(
    image: Tensor,
    labels: Tensor,
    num_regions: int | None = None,
    weight: Tensor | None = None,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Paint every pixel with the (weighted) mean colour of its region.

    Args:
        image: (B, C, H, W) float.
        labels: (B, H, W) int64 region of each pixel, in [0, num_regions), e.g. from line_regions.
        num_regions: R, the number of regions (default labels.max() + 1, which reads the labels).
        weight: optional (B, 1, H, W) pixel weights >= 0, same dtype (0 leaves a pixel out of the
            mean; it is painted all the same).
        backend: "auto" or a backend name (see refcolor.backends).

    Returns:
        painted (B, C, H, W) in the image's dtype and means (B, R, C); a region whose weights sum to
        0 has mean 0. Differentiable with respect to image and weight; float16/bfloat16 sum in float32.
    """
    num_regions = validate_inputs(image, labels, num_regions, weight)
    # Deterministic mode on CUDA: "auto" skips the atomic kernels for the reference.
    preference = {"cuda": ("reference",)} if torch.are_deterministic_algorithms_enabled() else None
    chosen = choose_backend(OP, backend, image.device, image.dtype, DTYPES, preference)
    if chosen == "reference":
        painted, means, _ = region_mean_reference(image, labels, num_regions, weight)
        return painted, means
    _check_deterministic(chosen, image.device)
    painted, means, _ = _region_mean_op(image, labels, weight, num_regions, chosen)
    return painted, means.to(image.dtype)


def _self_check(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """The GPU first-use check (refcolor.backends): 2 samples, 5 regions (one empty, one whose
    weights are all 0), with and without weights, against the reference."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 6, 5, generator=gen).to(device=device, dtype=dtype)
    labels = torch.randint(0, 5, (2, 6, 5), generator=gen)
    labels[labels == 3] = 4  # region 3 empty
    weight = torch.rand(2, 1, 6, 5, generator=gen)
    weight[:, 0][labels == 2] = 0  # region 2 present with total weight 0: mean 0, no gradient
    labels, weight = labels.to(device), weight.to(device=device, dtype=dtype)
    failure = compare_with_reference(
        lambda y, lab, backend: region_mean(y, lab, 5, backend=backend), [image, labels], backend, dtype
    )
    if failure:
        return f"without weight: {failure}"
    failure = compare_with_reference(
        lambda y, lab, w, backend: region_mean(y, lab, 5, w, backend=backend), [image, labels, weight], backend, dtype
    )
    return f"with weight: {failure}" if failure else None


register_self_check(OP, _self_check)

"""region_mean: each pixel's region mean colour over an int64 label map (the label-map form of
segment_hint_colors, for the hundreds of regions of `line_regions` that no dense (B, Nc, H, W)
segment map holds).

For an image Y (B, C, H, W), labels L (B, H, W) in [0, R) and optional pixel weights w (B, 1, H, W)
(default 1):

    W_r = sum_{j: L(j) = r} w(j)      mean_r = sum_{j: L(j) = r} w(j) Y(j) / W_r   if W_r > 0, else 0
    painted(j) = mean_{L(j)}          (B, C, H, W)

Differentiable with respect to the image and the weights. Weights let a caller leave pixels out of
the mean (w = 0 on the sketch's lines) while still painting them.

Backends: "reference" (torch.Tensor.scatter_reduce, the ground truth).
"""

from __future__ import annotations

import torch
from torch import Tensor

from refcolor.ops import _validation as check

OP = "region_mean"
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = {"reference": _ALL_FLOATS}


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
        low, high = int(labels.min()), int(labels.max())
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
    from refcolor.backends import choose_backend

    chosen = choose_backend(OP, backend, image.device, image.dtype, DTYPES)
    if chosen == "reference":
        painted, means, _ = region_mean_reference(image, labels, num_regions, weight)
        return painted, means
    raise AssertionError(f"{OP}: backend {chosen!r} has no implementation")

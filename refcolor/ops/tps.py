"""Thin-plate splines: solve, dense grid, and the pure-PyTorch reference warp.

Points are (B, K, 2) normalised (x, y) in [-1, 1] with the align_corners=True convention
(x = -1 + 2 col / (W - 1)). The spline moves the content at `src_points` to `dst_points`: an
output pixel q samples the input at

    T(q) = a0 + a1 qx + a2 qy + sum_k w_k U(|q - dst_k|^2),    U(s) = s log(s) / 2,  U(0) = 0,

the minimal-bending interpolant with T(dst_k) = src_k (scipy's RBFInterpolator with
kernel="thin_plate_spline", degree=1; scikit-image's ThinPlateSplineTransform).

Spline parameters are a (B, K + 3, 2) tensor: rows 0..K-1 hold w_k, rows K, K+1, K+2 hold a0, a1,
a2 (each an (x, y) pair). The fused kernels (refcolor.ops.tps_warp) take this layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.ops import _validation as check

PADDING_MODES = ("zeros", "border")


def tps_radial(r2: Tensor) -> Tensor:
    """U(s) = s log(s) / 2 with U(0) = 0, as a function of the squared distance s = r^2."""
    safe = torch.where(r2 > 0, r2, torch.ones_like(r2))  # log(1) = 0; keeps gradients finite at 0
    return 0.5 * r2 * torch.log(safe)


def check_points(op: str, name: str, points, batch: int | None = None) -> Tensor:
    check.check_float_tensor(op, name, points, 3, "(B, K, 2)")
    if points.shape[-1] != 2:
        raise ValueError(f"{op}: argument '{name}' must have shape (B, K, 2), got {tuple(points.shape)}")
    if points.shape[1] < 3:
        raise ValueError(f"{op}: argument '{name}' needs K >= 3 control points, got K = {points.shape[1]}")
    if batch is not None and points.shape[0] != batch:
        raise ValueError(f"{op}: argument '{name}' must have batch size {batch}, got shape {tuple(points.shape)}")
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{op}: argument '{name}' holds NaN or infinite coordinates")
    return points


def check_point_pair(op: str, src_points, dst_points) -> None:
    check_points(op, "src_points", src_points)
    check_points(op, "dst_points", dst_points)
    if src_points.shape != dst_points.shape:
        raise ValueError(
            f"{op}: arguments 'src_points' {tuple(src_points.shape)} and 'dst_points' "
            f"{tuple(dst_points.shape)} must have the same shape (B, K, 2)"
        )
    check.check_same_device(op, "dst_points", dst_points, "src_points", src_points)


def _check_not_degenerate(op: str, dst: Tensor, regularization: float) -> None:
    """Duplicates (unless regularised) and collinear control points make the system singular."""
    if torch.compiler.is_compiling():
        return
    B, K, _ = dst.shape
    scale = dst.abs().amax(dim=(1, 2)).clamp_min(1.0)
    if regularization == 0.0:
        d2 = torch.cdist(dst, dst).pow(2) + torch.eye(K, dtype=dst.dtype, device=dst.device) * 1e30
        close = d2.amin(dim=(1, 2)) <= (1e-10 * scale) ** 2
        if bool(close.any()):
            b = int(close.nonzero()[0, 0])
            i, j = divmod(int(d2[b].argmin()), K)
            raise ValueError(
                f"{op}: 'dst_points' of sample {b} has duplicate control points {i} and {j} "
                f"({dst[b, i].tolist()}); remove them or pass regularization > 0 (a smoothing spline)"
            )
    centred = dst - dst.mean(dim=1, keepdim=True)
    sv = torch.linalg.svdvals(centred)  # (B, 2)
    flat = sv[:, 1] <= 1e-9 * sv[:, 0].clamp_min(1e-300) + 1e-12 * scale
    if bool(flat.any()):
        b = int(flat.nonzero()[0, 0])
        raise ValueError(
            f"{op}: 'dst_points' of sample {b} are collinear: the affine part of the spline is undetermined "
            "(no regularisation fixes this); use control points that span both axes"
        )


def tps_solve(src_points: Tensor, dst_points: Tensor, regularization: float = 0.0) -> Tensor:
    """Spline parameters (B, K + 3, 2) in float64 with T(dst_k) = src_k.

    Solves [[U(|dst_i - dst_j|^2) + regularization I, P], [P^T, 0]] [w; a] = [src; 0] with
    P = [1, x, y] of dst_points, batched, in float64. regularization > 0 gives the smoothing spline
    (T no longer interpolates exactly) and makes duplicate control points solvable; collinear
    control points are always rejected (ValueError), so the result is never NaN. Differentiable
    with respect to both point sets.
    """
    op = "tps_solve"
    check_point_pair(op, src_points, dst_points)
    if regularization < 0:
        raise ValueError(f"{op}: argument 'regularization' must be >= 0, got {regularization}")
    src, dst = src_points.double(), dst_points.double()
    _check_not_degenerate(op, dst, regularization)
    B, K, _ = dst.shape
    kernel = tps_radial(torch.cdist(dst, dst).pow(2)) if K else dst.new_zeros(B, K, K)
    kernel = kernel + regularization * torch.eye(K, dtype=dst.dtype, device=dst.device)
    affine = torch.cat([dst.new_ones(B, K, 1), dst], dim=2)  # (B, K, 3)
    top = torch.cat([kernel, affine], dim=2)
    bottom = torch.cat([affine.transpose(1, 2), dst.new_zeros(B, 3, 3)], dim=2)
    system = torch.cat([top, bottom], dim=1)  # (B, K + 3, K + 3)
    rhs = torch.cat([src, src.new_zeros(B, 3, 2)], dim=1)
    return torch.linalg.solve(system, rhs)


def pixel_coordinates(size: tuple[int, int], *, dtype=torch.float32, device=None) -> tuple[Tensor, Tensor]:
    """Normalised x (W,) and y (H,) of pixel centres, align_corners=True (linspace(-1, 1, n))."""
    H, W = size
    return (torch.linspace(-1, 1, W, dtype=dtype, device=device), torch.linspace(-1, 1, H, dtype=dtype, device=device))


def tps_transform_points(params: Tensor, dst_points: Tensor, points: Tensor) -> Tensor:
    """T at arbitrary points (B, N, 2) -> (B, N, 2), in params' dtype. Differentiable."""
    ctrl = dst_points.to(params.dtype)
    q = points.to(params.dtype).expand(ctrl.shape[0], -1, -1)
    r2 = (q[:, :, None, :] - ctrl[:, None, :, :]).pow(2).sum(-1)  # (B, N, K)
    basis = torch.cat([tps_radial(r2), torch.ones_like(r2[..., :1]), q], dim=2)
    return basis @ params


def tps_grid_from_params(params: Tensor, dst_points: Tensor, size: tuple[int, int]) -> Tensor:
    """T at every pixel of an (H, W) output: (B, H, W, 2) in params' dtype. Differentiable."""
    H, W = size
    xs, ys = pixel_coordinates(size, dtype=params.dtype, device=params.device)
    q = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, H * W, 2)
    return tps_transform_points(params, dst_points, q).reshape(-1, H, W, 2)


def tps_grid(src_points: Tensor, dst_points: Tensor, size, *, regularization: float = 0.0) -> Tensor:
    """The sampling grid (B, H, W, 2): T evaluated at every output pixel (the dense correspondence:
    output pixel q shows the input content at grid[q]). dtype of the points (float32 at least)."""
    H, W = _check_size("tps_grid", size)
    params = tps_solve(src_points, dst_points, regularization)
    dtype = torch.promote_types(src_points.dtype, torch.float32)
    return tps_grid_from_params(params.to(dtype), dst_points, (H, W))


def _check_size(op: str, size) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or not all(isinstance(s, int) and s >= 1 for s in size)
    ):
        raise ValueError(f"{op}: argument 'size' must be (H, W) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def tps_warp_reference(image: Tensor, params: Tensor, dst_points: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Materialised grid + grid_sample: the ground truth of the fused kernels."""
    grid = tps_grid_from_params(params, dst_points, (image.shape[-2], image.shape[-1]))
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)

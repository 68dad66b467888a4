"""tps_warp: thin-plate-spline warping fused with bilinear sampling (no grid materialised).

Output pixel q is the bilinear sample of the image at T(q) (refcolor.ops.tps), with
grid_sample's align_corners=True sampling and "zeros" or "border" padding. The spline is solved
once per call in float64 (a (K+3)^2 system per sample); the kernels evaluate it in float32
(float64 for float64 images) and sample every channel in the same pass.

Backends: "reference" (tps_grid + grid_sample), "cpp" (csrc/tps_warp/cpu), "cuda"
(csrc/tps_warp/cuda), "triton" (refcolor.kernels.tps_warp), through the custom op
`refcolor::tps_warp` (fake implementation + registered autograd, torch.compile-safe).

The kernels read and write images through their strides (contiguous, channels-last, permuted or
sliced: no copies); the output and the image gradient come back in the image's memory format.

Gradients are exact: with respect to the image they equal grid_sample's on the same grid (the
kernels scatter into the input's 4 bilinear taps); with respect to the points they go through
grid_sample's grid gradient, the spline basis and the float64 solve.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from refcolor import _extension
from refcolor.backends import choose_backend, compare_with_reference, register_self_check
from refcolor.ops import _validation as check
from refcolor.ops.tps import (
    PADDING_MODES,
    pixel_coordinates,
    tps_grid_from_params,
    tps_radial,
    tps_solve,
    tps_warp_reference,
)

OP = "tps_warp"
_FLOATS = (torch.float32, torch.float64)
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = {"reference": _ALL_FLOATS, "cpp": _FLOATS, "cuda": _ALL_FLOATS, "triton": _ALL_FLOATS}


def _kernels(backend: str):
    """(forward, backward-to-image) of a non-reference backend."""
    if backend == "triton":
        from refcolor.kernels import tps_warp as triton_kernels

        return triton_kernels.tps_warp_forward, triton_kernels.tps_warp_backward_image
    if backend in ("cpp", "cuda"):
        _extension.compiled_module()
        return torch.ops.refcolor.tps_warp_forward_kernel, torch.ops.refcolor.tps_warp_backward_kernel
    raise ValueError(f"{OP}: no kernels for backend {backend!r}")


@torch.library.custom_op("refcolor::tps_warp", mutates_args=())
def _tps_warp_op(image: Tensor, params: Tensor, ctrl: Tensor, padding_mode: int, backend: str) -> Tensor:
    forward, _ = _kernels(backend)
    return forward(image, params, ctrl, padding_mode)


@_tps_warp_op.register_fake
def _(image, params, ctrl, padding_mode, backend):
    return torch.empty_like(image)  # the image's layout (channels-last in, channels-last out)


# Backends whose image gradient is summed with atomic adds (the taps of neighbouring output pixels
# overlap), so that its float rounding depends on the order threads arrive in on a GPU.
ATOMIC_BACKENDS = ("cuda", "triton")


def alert_if_nondeterministic(backend: str, device: torch.device) -> None:
    """As torch's own ops do under torch.use_deterministic_algorithms(True): a RuntimeError (a
    warning with warn_only=True) when the image gradient would be summed by GPU atomics."""
    if backend not in ATOMIC_BACKENDS or device.type != "cuda" or not torch.are_deterministic_algorithms_enabled():
        return
    message = (
        f"{OP} backward ({backend} backend) does not have a deterministic implementation (its image gradient "
        "is summed with atomic adds), but you set 'torch.use_deterministic_algorithms(True)'. Pass "
        "backend='reference' (or set REFCOLOR_BACKEND=reference) for a deterministic backward, or "
        "torch.use_deterministic_algorithms(True, warn_only=True) to allow it."
    )
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)


@torch.library.custom_op("refcolor::tps_warp_backward", mutates_args=())
def _tps_warp_backward_op(
    grad_out: Tensor, image: Tensor, params: Tensor, ctrl: Tensor, padding_mode: int, backend: str
) -> Tensor:
    """d loss / d image in the image's layout (`image` gives the layout only); grad_out any strides."""
    alert_if_nondeterministic(backend, grad_out.device)
    _, backward = _kernels(backend)
    return backward(grad_out, image, params, ctrl, padding_mode)


@_tps_warp_backward_op.register_fake
def _(grad_out, image, params, ctrl, padding_mode, backend):
    return torch.empty_like(image)


def _setup_context(ctx, inputs, output):
    image, params, ctrl, padding_mode, backend = inputs
    ctx.save_for_backward(image, params, ctrl)
    ctx.padding_mode, ctx.backend = padding_mode, backend


def _spline_backward(grad_grid: Tensor, params: Tensor, ctrl: Tensor, size) -> tuple[Tensor, Tensor]:
    """Chain rule from d loss / d grid (B, H, W, 2) to the parameters and control points."""
    H, W = size
    B, K = ctrl.shape[:2]
    xs, ys = pixel_coordinates(size, dtype=params.dtype, device=params.device)
    q = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, H * W, 2)
    g = grad_grid.reshape(B, H * W, 2).to(params.dtype)
    diff = q[:, :, None, :] - ctrl[:, None, :, :]  # (B, HW, K, 2)
    r2 = diff.pow(2).sum(-1)
    basis = torch.cat([tps_radial(r2), torch.ones_like(r2[..., :1]), q.expand(B, -1, -1)], dim=2)
    grad_params = basis.transpose(1, 2) @ g  # (B, K + 3, 2)
    # d U(r2) / d ctrl_k = U'(r2) * (-2)(q - ctrl_k), U'(s) = (log s + 1) / 2 (0 at s = 0: r2 U' -> 0)
    du = torch.where(r2 > 0, 0.5 * (torch.log(torch.where(r2 > 0, r2, 1)) + 1), 0)
    weight = (g @ params[:, :K].transpose(1, 2)) * du  # (B, HW, K): (g . w_k) U'
    grad_ctrl = -2 * (weight[..., None] * diff).sum(1)
    return grad_params, grad_ctrl


def _backward(ctx, grad_out):
    image, params, ctrl = ctx.saved_tensors
    grad_image = grad_params = grad_ctrl = None
    if ctx.needs_input_grad[0]:
        grad_image = _tps_warp_backward_op(grad_out, image, params, ctrl, ctx.padding_mode, ctx.backend)
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        grid = tps_grid_from_params(params, ctrl, image.shape[-2:]).to(image.dtype)
        _, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_out, image, grid, 0, ctx.padding_mode, True, [False, True]
        )
        grad_params, grad_ctrl = _spline_backward(grad_grid, params, ctrl, image.shape[-2:])
    return grad_image, grad_params, grad_ctrl, None, None


_tps_warp_op.register_autograd(_backward, setup_context=_setup_context)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_image(op: str, image, points: Tensor, padding_mode: str) -> None:
    check.check_float_tensor(op, "image", image, 4, "(B, C, H, W)")
    check.check_nonempty(op, "image", image, "(B, C, H, W)")
    check.check_same_device(op, "image", image, "dst_points", points)
    if image.shape[0] != points.shape[0]:
        raise ValueError(
            f"{op}: argument 'image' {tuple(image.shape)} and the points {tuple(points.shape)} must have "
            "the same batch size B"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: argument 'padding_mode' must be one of {PADDING_MODES}, got {padding_mode!r}")


def tps_warp_from_params(
    image: Tensor, params: Tensor, dst_points: Tensor, *, padding_mode: str = "zeros", backend: str = "auto"
) -> Tensor:
    """tps_warp with spline parameters already solved (tps_solve): lets a caller reuse one solve
    for the warp and the grid (refcolor.nn.RandomTPS)."""
    _check_image(OP, image, dst_points, padding_mode)
    chosen = choose_backend(OP, backend, image.device, image.dtype, DTYPES)
    compute = _compute_dtype(image.dtype)
    params, ctrl = params.to(compute).contiguous(), dst_points.to(compute).contiguous()
    if chosen == "reference":
        return tps_warp_reference(image, params, ctrl, padding_mode)
    return _tps_warp_op(image, params, ctrl, PADDING_MODES.index(padding_mode), chosen)


def tps_warp_with_grid(
    images: Tensor, params: Tensor, ctrl: Tensor, *, padding_mode: str, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """tps_warp_from_params of `images` (B, C, H, W) (spline `params` (B, K + 3, 2) from tps_solve,
    control points `ctrl` (B, K, 2)) with its sampling grid (B, H, W, 2), float32 (float64 for
    float64 images): the pair refcolor.nn.RandomTPS returns.

    Evaluating the grid densely (tps_grid_from_params: (B, H*W, K) at once) costs ~20x the fused
    warp on the CPU. Here the grid comes out of the warp itself: two extra channels hold each pixel's own
    normalised x and y, and bilinear sampling of a linear ramp returns the sampling location. Only
    pixels sampled at or beyond the image edge (where the padding clamps or zeroes the ramps) get
    the spline evaluated directly. The warped channels are the fused op's; the grid is the kernel's
    own spline evaluation (RandomTPS's dense grid agrees to ~1e-6). The "reference" backend, and
    half precision (ramps too coarse), take the dense path.
    """
    B, C, H, W = images.shape
    grid_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    p, d = params.to(grid_dtype).contiguous(), ctrl.to(grid_dtype).contiguous()
    chosen = choose_backend("tps_warp", backend, images.device, images.dtype, DTYPES)
    if chosen == "reference" or images.dtype not in (torch.float32, torch.float64):
        warped = tps_warp_from_params(images, params, ctrl, padding_mode=padding_mode, backend=backend)
        return warped, tps_grid_from_params(p, d, (H, W))
    xs, ys = pixel_coordinates((H, W), dtype=images.dtype, device=images.device)
    ramps = [xs.expand(H, W), ys[:, None].expand(H, W)]
    if padding_mode == "zeros":  # the sampled weight of in-image taps: < 1 past the edge
        ramps.append(torch.ones_like(ramps[0]))
    stacked = torch.cat([images, torch.stack(ramps).expand(B, -1, -1, -1)], dim=1)
    out = tps_warp_from_params(stacked, params, ctrl, padding_mode=padding_mode, backend=backend)
    grid = out[:, C : C + 2].permute(0, 2, 3, 1).to(grid_dtype, memory_format=torch.contiguous_format)
    edge = (grid.abs() >= 1 - 1e-5).any(dim=-1)  # clamped (border padding) or at the edge
    if padding_mode == "zeros":
        edge |= out[:, C + 2] < 1 - 1e-5
    xs, ys, K = xs.to(grid_dtype), ys.to(grid_dtype), d.shape[1]
    for b in edge.any(dim=(1, 2)).nonzero().flatten().tolist():  # one sync; ~5% of pixels per sample
        rows, cols = edge[b].nonzero(as_tuple=True)
        # T(q) = sum_k w_k U(|q - c_k|^2) + a0 + a1 qx + a2 qy, as tps_transform_points, on (M, K) only
        r2 = (xs[cols, None] - d[b, :, 0]).square_() + (ys[rows, None] - d[b, :, 1]).square_()
        radial = r2 * r2.clamp_min(1e-30).log_() * 0.5  # U(0) = 0
        affine = p[b, K] + xs[cols, None] * p[b, K + 1] + ys[rows, None] * p[b, K + 2]
        grid[b, rows, cols] = torch.addmm(affine, radial, p[b, :K])
    return out[:, :C].contiguous(), grid


def tps_warp(
    image: Tensor, src_points: Tensor, dst_points: Tensor, *, padding_mode: str = "zeros", backend: str = "auto"
) -> Tensor:
    """Warp `image` (B, C, H, W) by the thin-plate spline that moves `src_points` to `dst_points`.

    Args:
        image: (B, C, H, W), any C; float32/float64 (float16/bfloat16 too on the GPU backends and
            the reference, with float32 spline math).
        src_points, dst_points: (B, K, 2) normalised (x, y) in [-1, 1], K >= 3, finite.
        padding_mode: "zeros" or "border", as in grid_sample.
        backend: "auto", "reference", "cpp", "cuda" or "triton" (see refcolor.backends).

    Returns (B, C, H, W): output pixel q = bilinear sample of `image` at T(q), T(dst_k) = src_k.
    Differentiable exactly with respect to the image and both point sets (module docstring).
    """
    return tps_warp_from_params(  # tps_solve validates the points, tps_warp_from_params the rest
        image, tps_solve(src_points, dst_points), dst_points, padding_mode=padding_mode, backend=backend
    )


def _self_check(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """The GPU first-use check (refcolor.backends): a small warp, both padding modes, against the
    reference."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 10, 12, generator=gen).to(device=device, dtype=dtype)
    src = (torch.rand(2, 5, 2, generator=gen) * 1.6 - 0.8).to(device=device, dtype=dtype)
    dst = (src.double().cpu() + 0.1 * torch.randn(2, 5, 2, generator=gen)).to(device=device, dtype=dtype)
    for mode in ("zeros", "border"):
        failure = compare_with_reference(
            lambda x, a, b, backend, mode=mode: tps_warp(x, a, b, padding_mode=mode, backend=backend),
            [image, src, dst],
            backend,
            dtype,
        )
        if failure:
            return f"padding_mode={mode!r}: {failure}"
    return None


register_self_check(OP, _self_check)

"""Triton kernels of tps_warp: thin-plate-spline warp fused with bilinear sampling.

One pass, no grid tensor: each program takes a block of output pixels of one sample, evaluates
the spline T(q) = a0 + a1 qx + a2 qy + sum_k w_k U(|q - ctrl_k|^2) per pixel (control points
streamed in BLOCK_K chunks, math in the params dtype: float32, float64 for float64 images), then
samples every channel at T(q) with grid_sample's align_corners=True bilinear rule and "zeros" (0)
or "border" (1) padding. The image backward recomputes T(q) the same way and scatters
grad_out * weight into the 4 taps: the warp is not injective (many output pixels may read the
same input pixel), so the scatter uses atomic adds into a zero-initialised float32 buffer (float64
for float64 images), cast to the image dtype at the end. Parameter layout: refcolor.ops.tps.
Used by refcolor.ops.tps_warp(backend="triton"); CPU tensors run under TRITON_INTERPRET=1 (tests
only).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _linspace(idx, n, t: tl.constexpr):
    """torch.linspace(-1, 1, n)[idx] in dtype t: symmetric halves, so both ends are exact."""
    step = 2.0 / tl.cast(tl.maximum(n - 1, 1), t)
    lo = -1.0 + step * idx.to(t)
    hi = 1.0 - step * (n - 1 - idx).to(t)
    return tl.where((idx < n // 2) | (n == 1), lo, hi)


@triton.jit
def _spline(PARAMS, CTRL, b, offs_p, H, W, K, BLOCK_K: tl.constexpr):
    """T(q) (x and y) at the pixels offs_p of sample b, in the params dtype."""
    t: tl.constexpr = PARAMS.dtype.element_ty
    qx = _linspace(offs_p % W, W, t)
    qy = _linspace(offs_p // W, H, t)
    ctrl = CTRL + b * K * 2
    coef = PARAMS + b * (K + 3) * 2
    sx = tl.zeros(qx.shape, t)
    sy = tl.zeros(qx.shape, t)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        kmask = offs_k < K
        # Padded k slots get w = 0 and a finite U, so they add nothing.
        cx = tl.load(ctrl + 2 * offs_k, mask=kmask, other=0.0)
        cy = tl.load(ctrl + 2 * offs_k + 1, mask=kmask, other=0.0)
        wx = tl.load(coef + 2 * offs_k, mask=kmask, other=0.0)
        wy = tl.load(coef + 2 * offs_k + 1, mask=kmask, other=0.0)
        dx = qx[:, None] - cx[None, :]
        dy = qy[:, None] - cy[None, :]
        r2 = dx * dx + dy * dy
        u = 0.5 * r2 * tl.log(tl.where(r2 > 0, r2, 1.0))  # U(0) = 0 without log(0)
        sx += tl.sum(u * wx[None, :], axis=1)
        sy += tl.sum(u * wy[None, :], axis=1)
    aff = coef + 2 * K  # a0, a1, a2 as (x, y) pairs
    tx = tl.load(aff) + tl.load(aff + 2) * qx + tl.load(aff + 4) * qy + sx
    ty = tl.load(aff + 1) + tl.load(aff + 3) * qx + tl.load(aff + 5) * qy + sy
    return tx, ty


@triton.jit
def _taps(tx, ty, H, W, s_row, s_col, pmask, BORDER: tl.constexpr):
    """grid_sample (bilinear, align_corners=True) taps: offset of the top-left tap in a plane of
    row / column strides s_row, s_col, the 4 weights and the 4 in-bounds masks (out-of-bounds taps
    read and receive nothing)."""
    t: tl.constexpr = tx.dtype
    wm1 = tl.cast(W - 1, t)
    hm1 = tl.cast(H - 1, t)
    ix = (tx + 1.0) * (wm1 / 2.0)
    iy = (ty + 1.0) * (hm1 / 2.0)
    if BORDER:
        ix = tl.minimum(tl.maximum(ix, 0.0), wm1)
        iy = tl.minimum(tl.maximum(iy, 0.0), hm1)
    x0 = tl.floor(ix)
    y0 = tl.floor(iy)
    fx = ix - x0
    fy = iy - y0
    # Bounds are tested in floating point, so far-away or non-finite coordinates never reach
    # the integer conversion (they are replaced by 0 below and fully masked).
    vx0 = (x0 >= 0.0) & (x0 <= wm1)
    vx1 = (x0 >= -1.0) & (x0 < wm1)
    vy0 = (y0 >= 0.0) & (y0 <= hm1)
    vy1 = (y0 >= -1.0) & (y0 < hm1)
    xi = tl.where(vx0 | vx1, x0, 0.0).to(tl.int64)
    yi = tl.where(vy0 | vy1, y0, 0.0).to(tl.int64)
    off = yi * s_row + xi * s_col
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    m00 = pmask & vy0 & vx0
    m01 = pmask & vy0 & vx1
    m10 = pmask & vy1 & vx0
    m11 = pmask & vy1 & vx1
    return off, w00, w01, w10, w11, m00, m01, m10, m11


@triton.jit
def _tps_warp_forward_kernel(
    IMAGE,
    sib,
    sic,
    sih,
    siw,
    PARAMS,
    CTRL,
    OUT,
    sob,
    soc,
    soh,
    sow,
    C,
    H,
    W,
    K,
    BORDER: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    P = tl.cast(H, tl.int64) * W
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    tx, ty = _spline(PARAMS, CTRL, b, offs_p, H, W, K, BLOCK_K)
    off, w00, w01, w10, w11, m00, m01, m10, m11 = _taps(tx, ty, H, W, sih, siw, pmask, BORDER)
    acc_t: tl.constexpr = PARAMS.dtype.element_ty
    out_pix = OUT + b * sob + (offs_p // W) * soh + (offs_p % W) * sow
    # The spline is the expensive part: evaluate it once, reuse it for every channel.
    for c in range(C):
        src = IMAGE + b * sib + c * sic + off
        v = w00 * tl.load(src, mask=m00, other=0.0).to(acc_t)
        v += w01 * tl.load(src + siw, mask=m01, other=0.0).to(acc_t)
        v += w10 * tl.load(src + sih, mask=m10, other=0.0).to(acc_t)
        v += w11 * tl.load(src + sih + siw, mask=m11, other=0.0).to(acc_t)
        tl.store(out_pix + c * soc, v.to(OUT.dtype.element_ty), mask=pmask)


@triton.jit
def _tps_warp_backward_image_kernel(
    GRAD_OUT,
    sob,
    soc,
    soh,
    sow,
    PARAMS,
    CTRL,
    GRAD_IMAGE,
    sgb,
    sgc,
    sgh,
    sgw,
    C,
    H,
    W,
    K,
    BORDER: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    P = tl.cast(H, tl.int64) * W
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    tx, ty = _spline(PARAMS, CTRL, b, offs_p, H, W, K, BLOCK_K)
    off, w00, w01, w10, w11, m00, m01, m10, m11 = _taps(tx, ty, H, W, sgh, sgw, pmask, BORDER)
    acc_t: tl.constexpr = GRAD_IMAGE.dtype.element_ty
    w00 = w00.to(acc_t)
    w01 = w01.to(acc_t)
    w10 = w10.to(acc_t)
    w11 = w11.to(acc_t)
    g_pix = GRAD_OUT + b * sob + (offs_p // W) * soh + (offs_p % W) * sow
    for c in range(C):
        g = tl.load(g_pix + c * soc, mask=pmask, other=0.0).to(acc_t)
        dst = GRAD_IMAGE + b * sgb + c * sgc + off
        # Different output pixels can hit the same input tap: atomics, not plain stores.
        tl.atomic_add(dst, g * w00, mask=m00)
        tl.atomic_add(dst + sgw, g * w01, mask=m01)
        tl.atomic_add(dst + sgh, g * w10, mask=m10)
        tl.atomic_add(dst + sgh + sgw, g * w11, mask=m11)


MAX_BATCH = 65535  # the batch runs on grid axis 1, which CUDA caps at 65535


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _launch(kernel, x: torch.Tensor, params: torch.Tensor, ctrl: torch.Tensor, out: torch.Tensor, padding_mode: int):
    """x and out (B, C, H, W) of any strides: x is sampled (forward) or read per pixel (backward)."""
    B, C, H, W = x.shape
    if padding_mode not in (0, 1):
        raise ValueError(f"tps_warp (triton): padding_mode must be 0 (zeros) or 1 (border), got {padding_mode!r}")
    if B > MAX_BATCH:
        raise ValueError(f"tps_warp (triton): batch must be at most {MAX_BATCH}, got {B}")
    if x.numel() == 0:
        return
    K = ctrl.shape[1]
    P = H * W
    if x.device.type == "cpu":
        # The interpreter pays per program instance and per op: few programs, wide tiles.
        block_p, block_k_cap = min(4096, triton.next_power_of_2(P)), 64
    else:
        block_p, block_k_cap = 256, 16  # keeps the [BLOCK_P, BLOCK_K] spline tile in registers
    block_k = min(block_k_cap, triton.next_power_of_2(max(K, 1)))
    grid = (triton.cdiv(P, block_p), B)
    args = (x, *x.stride(), params, ctrl, out, *out.stride(), C, H, W, K)
    meta = {"BORDER": padding_mode == 1, "BLOCK_P": block_p, "BLOCK_K": block_k, "num_warps": 4}
    if x.device.type == "cuda":
        with torch.cuda.device(x.device):
            kernel[grid](*args, **meta)
    else:
        kernel[grid](*args, **meta)


def _spline_args(x: torch.Tensor, params: torch.Tensor, ctrl: torch.Tensor):
    compute = _compute_dtype(x.dtype)
    return params.to(compute).contiguous(), ctrl.to(compute).contiguous()  # (B, K + 3, 2), (B, K, 2): small


def tps_warp_forward(image: torch.Tensor, params: torch.Tensor, ctrl: torch.Tensor, padding_mode: int) -> torch.Tensor:
    """image (B, C, H, W) of any strides, params (B, K + 3, 2), ctrl (B, K, 2) -> warped image in
    the image's layout."""
    params, ctrl = _spline_args(image, params, ctrl)
    out = torch.empty_like(image)
    _launch(_tps_warp_forward_kernel, image, params, ctrl, out, padding_mode)
    return out


def tps_warp_backward_image(
    grad_out: torch.Tensor, image: torch.Tensor, params: torch.Tensor, ctrl: torch.Tensor, padding_mode: int
) -> torch.Tensor:
    """d loss / d image (B, C, H, W) in the image's layout (`image` is not read) from grad_out of
    any strides: grid_sample's input gradient."""
    params, ctrl = _spline_args(grad_out, params, ctrl)
    # The accumulator takes the image's layout: for float32 / float64 it is the gradient itself.
    acc = torch.zeros_like(image, dtype=_compute_dtype(grad_out.dtype))
    _launch(_tps_warp_backward_image_kernel, grad_out, params, ctrl, acc, padding_mode)
    return acc.to(grad_out.dtype)

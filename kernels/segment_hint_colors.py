"""Triton kernels of segment_hint_colors (GuidingPainter hint generation, Eq. 4-8).

Same decomposition as the C++ and CUDA kernels (csrc/segment_hint_colors/): per direction, a
reduction over pixels into per-block partial sums (deterministic, no atomics), a small finalize
kernel per (segment, sample), then a per-pixel paint pass. Only the first Nh segments of a sample
are read: the others contribute nothing and get zero gradient. The math mirrors
csrc/segment_hint_colors/segment_hint_colors_math.h. Accumulation is float32 (float64 for float64
inputs). Used by refcolor.ops.segment_hint_colors(backend="triton"); CPU tensors run under
TRITON_INTERPRET=1 (tests only).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _active_segments(NH, b, Nc):
    nh = tl.load(NH + b)
    return tl.minimum(tl.maximum(nh, 0), Nc)


@triton.jit
def _segment_reduce_kernel(
    S, X, NH, PARTIAL, Nc, C, P, n_pblocks,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, WITH_COUNT: tl.constexpr,
):
    """PARTIAL[b, pb, i, c] = sum over this pixel block of S_i X_c (c < C); slot C: sum S_i."""
    pb = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    acc_t = PARTIAL.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    pmask = offs_p < P
    cmask = offs_c < C
    # The block's image values stay in registers while the segment rows stream past.
    x = tl.load(X + (b * C + offs_c[:, None]) * P + offs_p[None, :],
                mask=cmask[:, None] & pmask[None, :], other=0.0).to(acc_t)
    row = C + 1
    out = PARTIAL + (b * n_pblocks + pb) * Nc * row
    for i in range(0, nh):
        s = tl.load(S + (b * Nc + i) * P + offs_p, mask=pmask, other=0.0).to(acc_t)
        tl.store(out + i * row + offs_c, tl.sum(x * s[None, :], axis=1), mask=cmask)
        if WITH_COUNT:
            tl.store(out + i * row + C, tl.sum(s, axis=0))


@triton.jit
def _block_totals(PARTIAL, b, i, active, Nc, C, n_pblocks, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """Sum over pixel blocks of the partials of (b, i): (BLOCK_C,), slot C = count; 0 if not active."""
    offs_c = tl.arange(0, BLOCK_C)
    row = C + 1
    total = tl.zeros([BLOCK_C], dtype=PARTIAL.dtype.element_ty)
    n_read = tl.where(active, n_pblocks, 0)  # rows of inactive segments hold no data
    for k0 in range(0, n_pblocks, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        valid = (offs_k[:, None] < n_read) & (offs_c[None, :] < row)
        tile = tl.load(PARTIAL + ((b * n_pblocks + offs_k[:, None]) * Nc + i) * row + offs_c[None, :],
                       mask=valid, other=0.0)
        total += tl.sum(tile, axis=0)
    return total


@triton.jit
def _finalize_forward_kernel(
    PARTIAL, NH, COLORS, COUNTS, Nc, C, n_pblocks, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
):
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    active = i < _active_segments(NH, b, Nc)
    total = _block_totals(PARTIAL, b, i, active, Nc, C, n_pblocks, BLOCK_K, BLOCK_C)
    count = tl.sum(tl.where(offs_c == C, total, 0.0), axis=0)
    # Eq. 6: an empty segment (count < 1) has colour 0; inactive ones have count 0.
    color = tl.where(count >= 1.0, total / tl.maximum(count, 1.0), 0.0)
    tl.store(COUNTS + b * Nc + i, count)
    tl.store(COLORS + (b * Nc + i) * C + offs_c, color, mask=offs_c < C)


@triton.jit
def _finalize_backward_kernel(
    PARTIAL, NH, COLORS, COUNTS, GRAD_SUM, GRAD_COUNT, Nc, C, n_pblocks,
    BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
):
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    cmask = offs_c < C
    active = i < _active_segments(NH, b, Nc)
    grad_color = tl.where(cmask, _block_totals(PARTIAL, b, i, active, Nc, C, n_pblocks, BLOCK_K, BLOCK_C), 0.0)
    count = tl.load(COUNTS + b * Nc + i)  # 0 for inactive segments
    color = tl.load(COLORS + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
    filled = count >= 1.0
    safe_count = tl.maximum(count, 1.0)
    grad_sum = tl.where(filled, grad_color / safe_count, 0.0)
    grad_count = tl.where(filled, -tl.sum(grad_color * color, axis=0) / safe_count, 0.0)
    tl.store(GRAD_SUM + (b * Nc + i) * C + offs_c, grad_sum, mask=cmask)
    tl.store(GRAD_COUNT + b * Nc + i, grad_count)


@triton.jit
def _paint_forward_kernel(
    S, NH, COLORS, HINTS, MASK, Nc, C, P, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    acc_t = COLORS.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    pmask = offs_p < P
    cmask = offs_c < C
    hints = tl.zeros([BLOCK_C, BLOCK_P], dtype=acc_t)
    mask = tl.zeros([BLOCK_P], dtype=acc_t)
    for i in range(0, nh):
        s = tl.load(S + (b * Nc + i) * P + offs_p, mask=pmask, other=0.0).to(acc_t)
        color = tl.load(COLORS + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        hints += color[:, None] * s[None, :]
        mask += s
    tl.store(HINTS + (b * C + offs_c[:, None]) * P + offs_p[None, :], hints.to(HINTS.dtype.element_ty),
             mask=cmask[:, None] & pmask[None, :])
    tl.store(MASK + b * P + offs_p, mask.to(MASK.dtype.element_ty), mask=pmask)


@triton.jit
def _paint_backward_kernel(
    GRAD_HINTS, GRAD_MASK, S, Y, NH, COLORS, GRAD_SUM, GRAD_COUNT, GRAD_S, GRAD_Y, Nc, C, P,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    acc_t = COLORS.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C)
    pmask = offs_p < P
    cmask = offs_c < C
    tile = (b * C + offs_c[:, None]) * P + offs_p[None, :]
    tmask = cmask[:, None] & pmask[None, :]
    grad_hints = tl.load(GRAD_HINTS + tile, mask=tmask, other=0.0).to(acc_t)
    image = tl.load(Y + tile, mask=tmask, other=0.0).to(acc_t)
    grad_mask = tl.load(GRAD_MASK + b * P + offs_p, mask=pmask, other=0.0).to(acc_t)
    grad_image = tl.zeros([BLOCK_C, BLOCK_P], dtype=acc_t)
    for i in range(0, nh):
        color = tl.load(COLORS + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        grad_sum = tl.load(GRAD_SUM + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        grad_count = tl.load(GRAD_COUNT + b * Nc + i)
        grad_s = tl.sum(color[:, None] * grad_hints + grad_sum[:, None] * image, axis=0) + grad_mask + grad_count
        tl.store(GRAD_S + (b * Nc + i) * P + offs_p, grad_s.to(GRAD_S.dtype.element_ty), mask=pmask)
        s = tl.load(S + (b * Nc + i) * P + offs_p, mask=pmask, other=0.0).to(acc_t)
        grad_image += grad_sum[:, None] * s[None, :]
    zero = tl.zeros([BLOCK_P], dtype=GRAD_S.dtype.element_ty)
    for i in range(nh, Nc):  # inactive segments: no gradient
        tl.store(GRAD_S + (b * Nc + i) * P + offs_p, zero, mask=pmask)
    tl.store(GRAD_Y + tile, grad_image.to(GRAD_Y.dtype.element_ty), mask=tmask)


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block_pixels(pixels: int, device: torch.device) -> int:
    # The interpreter pays per program instance, so CPU runs use few, large blocks.
    cap = 4096 if device.type == "cpu" else 1024
    return min(cap, triton.next_power_of_2(pixels))


MAX_BATCH = 65535  # the batch runs on grid axis 1, which CUDA caps at 65535


def _check_batch(batch: int) -> None:
    if batch > MAX_BATCH:
        raise ValueError(f"segment_hint_colors (triton): batch must be at most {MAX_BATCH}, got {batch}")


def _reduce(S, X, num_hints, with_count: bool):
    B, Nc, H, W = S.shape
    _check_batch(B)
    C, P = X.shape[1], H * W
    block_p = _block_pixels(P, S.device)
    n_pblocks = triton.cdiv(P, block_p)
    # Rows of inactive segments are never written; the finalize kernels never read them.
    partial = torch.empty((B, n_pblocks, Nc, C + 1), device=S.device, dtype=_accumulate_dtype(S.dtype))
    _segment_reduce_kernel[(n_pblocks, B)](
        S, X, num_hints, partial, Nc, C, P, n_pblocks,
        BLOCK_P=block_p, BLOCK_C=triton.next_power_of_2(C), WITH_COUNT=with_count, num_warps=4,
    )
    return partial, n_pblocks


def _finalize_blocks(n_pblocks: int) -> int:
    return min(64, triton.next_power_of_2(n_pblocks))


def segment_hint_colors_forward(segments: torch.Tensor, image: torch.Tensor, num_hints: torch.Tensor):
    """-> hints (B, C, H, W), mask (B, 1, H, W), colors (B, Nc, C), counts (B, Nc) (accumulator dtype)."""
    S, Y, nh = segments.contiguous(), image.contiguous(), num_hints.contiguous()
    B, Nc, H, W = S.shape
    C, P = Y.shape[1], H * W
    acc = _accumulate_dtype(S.dtype)
    partial, n_pblocks = _reduce(S, Y, nh, with_count=True)
    colors = torch.empty((B, Nc, C), device=S.device, dtype=acc)
    counts = torch.empty((B, Nc), device=S.device, dtype=acc)
    block_c = triton.next_power_of_2(C + 1)
    _finalize_forward_kernel[(Nc, B)](
        partial, nh, colors, counts, Nc, C, n_pblocks, BLOCK_K=_finalize_blocks(n_pblocks), BLOCK_C=block_c,
    )
    hints = torch.empty((B, C, H, W), device=S.device, dtype=S.dtype)
    mask = torch.empty((B, 1, H, W), device=S.device, dtype=S.dtype)
    block_p = _block_pixels(P, S.device)
    _paint_forward_kernel[(triton.cdiv(P, block_p), B)](
        S, nh, colors, hints, mask, Nc, C, P, BLOCK_P=block_p, BLOCK_C=triton.next_power_of_2(C), num_warps=4,
    )
    return hints, mask, colors, counts


def segment_hint_colors_backward(grad_hints, grad_mask, segments, image, num_hints, colors, counts):
    """-> grad_segments (B, Nc, H, W), grad_image (B, C, H, W)."""
    S, Y, nh = segments.contiguous(), image.contiguous(), num_hints.contiguous()
    gH = grad_hints.to(S.dtype).contiguous()
    gM = grad_mask.to(S.dtype).contiguous()
    B, Nc, H, W = S.shape
    C, P = Y.shape[1], H * W
    partial, n_pblocks = _reduce(S, gH, nh, with_count=False)
    grad_sum = torch.empty_like(colors)
    grad_count = torch.empty_like(counts)
    _finalize_backward_kernel[(Nc, B)](
        partial, nh, colors.contiguous(), counts.contiguous(), grad_sum, grad_count, Nc, C, n_pblocks,
        BLOCK_K=_finalize_blocks(n_pblocks), BLOCK_C=triton.next_power_of_2(C + 1),
    )
    grad_s = torch.empty_like(S)
    grad_y = torch.empty_like(Y)
    block_p = _block_pixels(P, S.device)
    _paint_backward_kernel[(triton.cdiv(P, block_p), B)](
        gH, gM, S, Y, nh, colors.contiguous(), grad_sum, grad_count, grad_s, grad_y, Nc, C, P,
        BLOCK_P=block_p, BLOCK_C=triton.next_power_of_2(C), num_warps=4,
    )
    return grad_s, grad_y

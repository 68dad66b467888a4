"""Triton kernels of segment_hint_colors (GuidingPainter hint generation, Eq. 4-8).

Same decomposition as the C++ and CUDA kernels (csrc/segment_hint_colors/): per direction, a
reduction over pixels into per-block partial sums (deterministic, no atomics), a small finalize
kernel per (segment, sample), then a per-pixel paint pass. Only the first Nh segments of a sample
are read: the others contribute nothing and get zero gradient. The math mirrors
csrc/segment_hint_colors/segment_hint_colors_math.h. Accumulation is float32 (float64 for float64
inputs). Every tensor is addressed through its strides (contiguous, channels-last, sliced: no
copies); pixel p of a row width `width` is at (p // width) * row stride + (p % width) * column
stride, with width = H * W when every tensor allows one flat pixel axis. Used by
refcolor.ops.segment_hint_colors(backend="triton"); CPU tensors run under TRITON_INTERPRET=1 (tests only).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from refcolor.kernels import device_guard, pixel_strides


@triton.jit
def _active_segments(NH, b, Nc):
    nh = tl.load(NH + b)
    return tl.minimum(tl.maximum(nh, 0), Nc)


@triton.jit
def _pixel_offset(offs_p, width, s_row, s_col):
    """Element offset of pixels offs_p within a (row, column) plane."""
    return (offs_p // width) * s_row + (offs_p % width) * s_col


@triton.jit
def _segment_reduce_kernel(
    S,
    ssb,
    ssc,
    ssh,
    ssw,
    X,
    sxb,
    sxc,
    sxh,
    sxw,
    NH,
    PARTIAL,
    Nc,
    C,
    P,
    width,
    n_pblocks,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
    WITH_COUNT: tl.constexpr,
):
    """PARTIAL[b, pb, i, c] = sum over this pixel block of S_i X_c (c < C); slot C: sum S_i."""
    pb = tl.program_id(0).to(tl.int64)  # pixel offsets: P * strides can pass 2^31 (e.g. Nc channels-last)
    b = tl.program_id(1).to(tl.int64)
    acc_t = PARTIAL.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    pmask = offs_p < P
    cmask = offs_c < C
    # The block's image values stay in registers while the segment rows stream past.
    x = tl.load(
        X + b * sxb + offs_c[:, None] * sxc + _pixel_offset(offs_p, width, sxh, sxw)[None, :],
        mask=cmask[:, None] & pmask[None, :],
        other=0.0,
    ).to(acc_t)
    s_pix = S + b * ssb + _pixel_offset(offs_p, width, ssh, ssw)
    row = C + 1
    out = PARTIAL + (b * n_pblocks + pb) * Nc * row
    for i in range(nh):
        s = tl.load(s_pix + i * ssc, mask=pmask, other=0.0).to(acc_t)
        tl.store(out + i * row + offs_c, tl.sum(x * s[None, :], axis=1), mask=cmask)
        if WITH_COUNT:
            tl.store(out + i * row + C, tl.sum(s, axis=0))


@triton.jit
def _block_totals(PARTIAL, b, i, active, Nc, C, n_pblocks, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """Sum over pixel blocks of the partials of (b, i): (BLOCK_C,), slot C = count; 0 if not active."""
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    row = C + 1
    total = tl.zeros([BLOCK_C], dtype=PARTIAL.dtype.element_ty)
    n_read = tl.where(active, n_pblocks, 0)  # rows of inactive segments hold no data
    for k0 in range(0, n_pblocks, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        valid = (offs_k[:, None] < n_read) & (offs_c[None, :] < row)
        tile = tl.load(
            PARTIAL + ((b * n_pblocks + offs_k[:, None]) * Nc + i) * row + offs_c[None, :], mask=valid, other=0.0
        )
        total += tl.sum(tile, axis=0)
    return total


@triton.jit
def _finalize_forward_kernel(
    PARTIAL,
    NH,
    COLORS,
    COUNTS,
    Nc,
    C,
    n_pblocks,
    BLOCK_K: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    active = i < _active_segments(NH, b, Nc)
    total = _block_totals(PARTIAL, b, i, active, Nc, C, n_pblocks, BLOCK_K, BLOCK_C)
    count = tl.sum(tl.where(offs_c == C, total, 0.0), axis=0)
    # Eq. 6: an empty segment (count < 1) has colour 0; inactive ones have count 0.
    color = tl.where(count >= 1.0, total / tl.maximum(count, 1.0), 0.0)
    tl.store(COUNTS + b * Nc + i, count)
    tl.store(COLORS + (b * Nc + i) * C + offs_c, color, mask=offs_c < C)


@triton.jit
def _finalize_backward_kernel(
    PARTIAL,
    NH,
    COLORS,
    COUNTS,
    GRAD_SUM,
    GRAD_COUNT,
    Nc,
    C,
    n_pblocks,
    BLOCK_K: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    i = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
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
    S,
    ssb,
    ssc,
    ssh,
    ssw,
    NH,
    COLORS,
    HINTS,
    shb,
    shc,
    shh,
    shw,
    MASK,
    smb,
    smh,
    smw,
    Nc,
    C,
    P,
    width,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)  # pixel offsets: P * strides can pass 2^31 (e.g. Nc channels-last)
    b = tl.program_id(1).to(tl.int64)
    acc_t = COLORS.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    pmask = offs_p < P
    cmask = offs_c < C
    s_pix = S + b * ssb + _pixel_offset(offs_p, width, ssh, ssw)
    hints = tl.zeros([BLOCK_C, BLOCK_P], dtype=acc_t)
    mask = tl.zeros([BLOCK_P], dtype=acc_t)
    for i in range(nh):
        s = tl.load(s_pix + i * ssc, mask=pmask, other=0.0).to(acc_t)
        color = tl.load(COLORS + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        hints += color[:, None] * s[None, :]
        mask += s
    h_ptr = HINTS + b * shb + offs_c[:, None] * shc + _pixel_offset(offs_p, width, shh, shw)[None, :]
    tl.store(h_ptr, hints.to(HINTS.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])
    tl.store(MASK + b * smb + _pixel_offset(offs_p, width, smh, smw), mask.to(MASK.dtype.element_ty), mask=pmask)


@triton.jit
def _paint_backward_kernel(
    GRAD_HINTS,
    sgb,
    sgc,
    sgh,
    sgw,
    GRAD_MASK,
    smb,
    smh,
    smw,
    S,
    ssb,
    ssc,
    ssh,
    ssw,
    Y,
    syb,
    syc,
    syh,
    syw,
    NH,
    COLORS,
    GRAD_SUM,
    GRAD_COUNT,
    GRAD_S,
    sdb,
    sdc,
    sdh,
    sdw,
    GRAD_Y,
    seb,
    sec,
    seh,
    sew,
    Nc,
    C,
    P,
    width,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)  # pixel offsets: P * strides can pass 2^31 (e.g. Nc channels-last)
    b = tl.program_id(1).to(tl.int64)
    acc_t = COLORS.dtype.element_ty
    nh = _active_segments(NH, b, Nc)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    pmask = offs_p < P
    cmask = offs_c < C
    tmask = cmask[:, None] & pmask[None, :]
    grad_hints = tl.load(
        GRAD_HINTS + b * sgb + offs_c[:, None] * sgc + _pixel_offset(offs_p, width, sgh, sgw)[None, :],
        mask=tmask,
        other=0.0,
    ).to(acc_t)
    image = tl.load(
        Y + b * syb + offs_c[:, None] * syc + _pixel_offset(offs_p, width, syh, syw)[None, :], mask=tmask, other=0.0
    ).to(acc_t)
    grad_mask = tl.load(GRAD_MASK + b * smb + _pixel_offset(offs_p, width, smh, smw), mask=pmask, other=0.0).to(acc_t)
    s_pix = S + b * ssb + _pixel_offset(offs_p, width, ssh, ssw)
    ds_pix = GRAD_S + b * sdb + _pixel_offset(offs_p, width, sdh, sdw)
    grad_image = tl.zeros([BLOCK_C, BLOCK_P], dtype=acc_t)
    for i in range(nh):
        color = tl.load(COLORS + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        grad_sum = tl.load(GRAD_SUM + (b * Nc + i) * C + offs_c, mask=cmask, other=0.0)
        grad_count = tl.load(GRAD_COUNT + b * Nc + i)
        grad_s = tl.sum(color[:, None] * grad_hints + grad_sum[:, None] * image, axis=0) + grad_mask + grad_count
        tl.store(ds_pix + i * sdc, grad_s.to(GRAD_S.dtype.element_ty), mask=pmask)
        s = tl.load(s_pix + i * ssc, mask=pmask, other=0.0).to(acc_t)
        grad_image += grad_sum[:, None] * s[None, :]
    zero = tl.zeros([BLOCK_P], dtype=GRAD_S.dtype.element_ty)
    for i in range(nh, Nc):  # inactive segments: no gradient
        tl.store(ds_pix + i * sdc, zero, mask=pmask)
    e_ptr = GRAD_Y + b * seb + offs_c[:, None] * sec + _pixel_offset(offs_p, width, seh, sew)[None, :]
    tl.store(e_ptr, grad_image.to(GRAD_Y.dtype.element_ty), mask=tmask)


def _row_width(*tensors: torch.Tensor) -> int:
    """H * W when every tensor's pixels form one strided axis (contiguous, channels-last,
    column-sliced), else W."""
    H, W = tensors[0].shape[2], tensors[0].shape[3]
    flat = all(pixel_strides(t)[2] == W * pixel_strides(t)[3] for t in tensors)
    return H * W if flat else W


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# The kernels hold [BLOCK_C, BLOCK_P] tiles (every channel of a pixel block) in registers: on a GPU
# at most GPU_TILE elements, i.e. fewer pixels per block for more channels (1024 pixels of 3 or 4
# channels; 64 of 64), and at most MAX_CHANNELS channels at all.
GPU_TILE = 4096
MAX_CHANNELS = 1024


def _block_pixels(pixels: int, device: torch.device, channels: int) -> int:
    # The interpreter pays per program instance, so CPU runs use few, large blocks.
    if channels > MAX_CHANNELS:
        raise ValueError(
            f"segment_hint_colors (triton): images must have at most {MAX_CHANNELS} channels, got {channels}"
        )
    cap = 4096 if device.type == "cpu" else max(16, min(1024, GPU_TILE // triton.next_power_of_2(channels + 1)))
    return min(cap, triton.next_power_of_2(pixels))


MAX_BATCH = 65535  # the batch runs on grid axis 1, which CUDA caps at 65535


def _check_batch(batch: int) -> None:
    if batch > MAX_BATCH:
        raise ValueError(f"segment_hint_colors (triton): batch must be at most {MAX_BATCH}, got {batch}")


def _reduce(S, X, num_hints, width: int, with_count: bool):
    B, Nc, H, W = S.shape
    _check_batch(B)
    C, P = X.shape[1], H * W
    block_p = _block_pixels(P, S.device, C)
    n_pblocks = triton.cdiv(P, block_p)
    # Rows of inactive segments are never written; the finalize kernels never read them.
    partial = torch.empty((B, n_pblocks, Nc, C + 1), device=S.device, dtype=_accumulate_dtype(S.dtype))
    with device_guard(S.device):
        _segment_reduce_kernel[(n_pblocks, B)](
            S,
            *pixel_strides(S),
            X,
            *pixel_strides(X),
            num_hints,
            partial,
            Nc,
            C,
            P,
            width,
            n_pblocks,
            BLOCK_P=block_p,
            BLOCK_C=triton.next_power_of_2(C),
            WITH_COUNT=with_count,
            num_warps=4,
        )
    return partial, n_pblocks


def _finalize_blocks(n_pblocks: int) -> int:
    return min(64, triton.next_power_of_2(n_pblocks))


def segment_hint_colors_forward(segments: torch.Tensor, image: torch.Tensor, num_hints: torch.Tensor):
    """-> hints (B, C, H, W) in the image's layout, mask (B, 1, H, W), colors (B, Nc, C), counts
    (B, Nc) (accumulator dtype). Inputs of any strides."""
    S, Y, nh = segments, image, num_hints.contiguous()
    B, Nc, H, W = S.shape
    C, P = Y.shape[1], H * W
    acc = _accumulate_dtype(S.dtype)
    hints = torch.empty_like(Y)
    mask = torch.empty((B, 1, H, W), device=S.device, dtype=S.dtype)
    width = _row_width(S, Y, hints, mask)
    partial, n_pblocks = _reduce(S, Y, nh, width, with_count=True)
    colors = torch.empty((B, Nc, C), device=S.device, dtype=acc)
    counts = torch.empty((B, Nc), device=S.device, dtype=acc)
    block_c = triton.next_power_of_2(C + 1)
    with device_guard(S.device):
        _finalize_forward_kernel[(Nc, B)](
            partial,
            nh,
            colors,
            counts,
            Nc,
            C,
            n_pblocks,
            BLOCK_K=_finalize_blocks(n_pblocks),
            BLOCK_C=block_c,
        )
    smb, _, smh, smw = pixel_strides(mask)
    block_p = _block_pixels(P, S.device, C)
    with device_guard(S.device):
        _paint_forward_kernel[(triton.cdiv(P, block_p), B)](
            S,
            *pixel_strides(S),
            nh,
            colors,
            hints,
            *pixel_strides(hints),
            mask,
            smb,
            smh,
            smw,
            Nc,
            C,
            P,
            width,
            BLOCK_P=block_p,
            BLOCK_C=triton.next_power_of_2(C),
            num_warps=4,
        )
    return hints, mask, colors, counts


def segment_hint_colors_backward(grad_hints, grad_mask, segments, image, num_hints, colors, counts):
    """-> grad_segments (B, Nc, H, W), grad_image (B, C, H, W), each in its input's layout."""
    S, Y, nh = segments, image, num_hints.contiguous()
    gH, gM = grad_hints.to(S.dtype), grad_mask.to(S.dtype)
    B, Nc, H, W = S.shape
    C, P = Y.shape[1], H * W
    grad_s = torch.empty_like(S)
    grad_y = torch.empty_like(Y)
    width = _row_width(gH, gM, S, Y, grad_s, grad_y)
    partial, n_pblocks = _reduce(S, gH, nh, width, with_count=False)
    grad_sum = torch.empty(colors.shape, device=S.device, dtype=colors.dtype)
    grad_count = torch.empty(counts.shape, device=S.device, dtype=counts.dtype)
    colors, counts = colors.contiguous(), counts.contiguous()  # (B, Nc, C), (B, Nc): tiny
    with device_guard(S.device):
        _finalize_backward_kernel[(Nc, B)](
            partial,
            nh,
            colors,
            counts,
            grad_sum,
            grad_count,
            Nc,
            C,
            n_pblocks,
            BLOCK_K=_finalize_blocks(n_pblocks),
            BLOCK_C=triton.next_power_of_2(C + 1),
        )
    smb, _, smh, smw = pixel_strides(gM)
    block_p = _block_pixels(P, S.device, C)
    with device_guard(S.device):
        _paint_backward_kernel[(triton.cdiv(P, block_p), B)](
            gH,
            *pixel_strides(gH),
            gM,
            smb,
            smh,
            smw,
            S,
            *pixel_strides(S),
            Y,
            *pixel_strides(Y),
            nh,
            colors,
            grad_sum,
            grad_count,
            grad_s,
            *pixel_strides(grad_s),
            grad_y,
            *pixel_strides(grad_y),
            Nc,
            C,
            P,
            width,
            BLOCK_P=block_p,
            BLOCK_C=triton.next_power_of_2(C),
            num_warps=4,
        )
    return grad_s, grad_y

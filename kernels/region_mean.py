"""Triton kernels of region_mean (each pixel's weighted region mean over an int64 label map).

Same decomposition as the C++ and CUDA kernels (csrc/region_mean/), per direction:
  reduce:   one program per (pixel block, sample) adds w Y_c and w of its pixels into a (B, R, C + 1)
            table with atomic adds (float32, float64 for float64 inputs);
  finalize: one program per (region block, sample) forms the means (or their gradients);
  paint:    one program per (pixel block, sample) gathers its pixels' region rows.
The math mirrors csrc/region_mean/region_mean_math.h. Atomic adds make the last bits of the sums
vary from run to run on a GPU; refcolor.ops.region_mean refuses this backend on CUDA under
torch.use_deterministic_algorithms(True). Every tensor is addressed through its strides
(contiguous, channels-last, sliced: no copies) with int64 offsets; pixel p of a row width `width`
is at (p // width) * row stride + (p % width) * column stride, with width = H * W when every tensor
allows one flat pixel axis. Labels outside [0, R) add nothing and paint 0 (refcolor.ops validates
them). Used by refcolor.ops.region_mean(backend="triton"); CPU tensors run under TRITON_INTERPRET=1
(tests only).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from refcolor.kernels import device_guard, pixel_strides


@triton.jit
def _pixel_offset(offs_p, width, s_row, s_col):
    """Element offset (int64) of pixels offs_p within a (row, column) plane."""
    offs_p = offs_p.to(tl.int64)
    return (offs_p // width) * s_row + (offs_p % width) * s_col


@triton.jit
def _reduce_kernel(
    X,
    sxb,
    sxc,
    sxh,
    sxw,
    LABELS,
    slb,
    slh,
    slw,
    WEIGHT,
    swb,
    swh,
    sww,
    TABLE,
    C,
    R,
    P,
    width,
    HAS_WEIGHT: tl.constexpr,
    WITH_TOTAL: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """TABLE[b, L(p), c] += w(p) X_c(p) (c < C); TABLE[b, L(p), C] += w(p) when WITH_TOTAL."""
    pb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    acc_t = TABLE.dtype.element_ty
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    label = tl.load(LABELS + b * slb + _pixel_offset(offs_p, width, slh, slw), mask=pmask, other=-1)
    valid = pmask & (label >= 0) & (label < R)
    if HAS_WEIGHT:
        w = tl.load(WEIGHT + b * swb + _pixel_offset(offs_p, width, swh, sww), mask=valid, other=0.0).to(acc_t)
    else:
        w = tl.where(valid, 1.0, 0.0).to(acc_t)
    slots = C + 1
    row = TABLE + (b * R + tl.where(valid, label, 0)) * slots  # (BLOCK_P,) pointers
    x_pix = X + b * sxb + _pixel_offset(offs_p, width, sxh, sxw)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        m = (offs_c < C)[:, None] & valid[None, :]
        x = tl.load(x_pix[None, :] + offs_c[:, None].to(tl.int64) * sxc, mask=m, other=0.0).to(acc_t)
        tl.atomic_add(row[None, :] + offs_c[:, None], x * w[None, :], mask=m, sem="relaxed")
    if WITH_TOTAL:
        tl.atomic_add(row + C, w, mask=valid, sem="relaxed")


@triton.jit
def _finalize_forward_kernel(TABLE, MEANS, TOTALS, C, R, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """MEANS[b, r, c] = sum / total (0 where total <= 0); TOTALS[b, r] = total."""
    rb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    offs_r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = offs_r < R
    slots = C + 1
    rows = b * R + offs_r
    total = tl.load(TABLE + rows * slots + C, mask=rmask, other=0.0)
    filled = total > 0.0
    safe = tl.where(filled, total, 1.0)
    tl.store(TOTALS + rows, total, mask=rmask)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        m = rmask[:, None] & (offs_c < C)[None, :]
        s = tl.load(TABLE + rows[:, None] * slots + offs_c[None, :], mask=m, other=0.0)
        mean = tl.where(filled[:, None], s / safe[:, None], 0.0)
        tl.store(MEANS + rows[:, None] * C + offs_c[None, :], mean, mask=m)


@triton.jit
def _finalize_backward_kernel(
    TABLE,
    GRAD_MEANS,
    MEANS,
    TOTALS,
    GRAD_SUM,
    GRAD_TOTAL,
    C,
    R,
    HAS_GRAD_MEANS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """gmean = TABLE + GRAD_MEANS; GRAD_SUM = gmean / W; GRAD_TOTAL = -sum_c gmean mean / W (W > 0)."""
    rb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    offs_r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = offs_r < R
    slots = C + 1
    rows = b * R + offs_r
    total = tl.load(TOTALS + rows, mask=rmask, other=0.0)
    filled = total > 0.0
    safe = tl.where(filled, total, 1.0)
    grad_total = tl.zeros([BLOCK_R], dtype=TOTALS.dtype.element_ty)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        m = rmask[:, None] & (offs_c < C)[None, :]
        gmean = tl.load(TABLE + rows[:, None] * slots + offs_c[None, :], mask=m, other=0.0)
        if HAS_GRAD_MEANS:
            gmean += tl.load(GRAD_MEANS + rows[:, None] * C + offs_c[None, :], mask=m, other=0.0)
        mean = tl.load(MEANS + rows[:, None] * C + offs_c[None, :], mask=m, other=0.0)
        tl.store(
            GRAD_SUM + rows[:, None] * C + offs_c[None, :],
            tl.where(filled[:, None], gmean / safe[:, None], 0.0),
            mask=m,
        )
        grad_total += tl.sum(gmean * mean, axis=1)
    tl.store(GRAD_TOTAL + rows, tl.where(filled, -grad_total / safe, 0.0), mask=rmask)


@triton.jit
def _paint_forward_kernel(
    LABELS,
    slb,
    slh,
    slw,
    MEANS,
    OUT,
    sob,
    soc,
    soh,
    sow,
    C,
    R,
    P,
    width,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    label = tl.load(LABELS + b * slb + _pixel_offset(offs_p, width, slh, slw), mask=pmask, other=-1)
    valid = pmask & (label >= 0) & (label < R)
    row = MEANS + (b * R + tl.where(valid, label, 0)) * C
    o_pix = OUT + b * sob + _pixel_offset(offs_p, width, soh, sow)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        cmask = (offs_c < C)[:, None]
        mean = tl.load(row[None, :] + offs_c[:, None], mask=cmask & valid[None, :], other=0.0)
        tl.store(
            o_pix[None, :] + offs_c[:, None].to(tl.int64) * soc,
            mean.to(OUT.dtype.element_ty),
            mask=cmask & pmask[None, :],
        )


@triton.jit
def _paint_backward_kernel(
    LABELS,
    slb,
    slh,
    slw,
    Y,
    syb,
    syc,
    syh,
    syw,
    WEIGHT,
    swb,
    swh,
    sww,
    GRAD_SUM,
    GRAD_TOTAL,
    GRAD_Y,
    sgb,
    sgc,
    sgh,
    sgw,
    GRAD_W,
    sdb,
    sdh,
    sdw,
    C,
    R,
    P,
    width,
    HAS_WEIGHT: tl.constexpr,
    WEIGHT_GRAD: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """GRAD_Y_c = w gsum[L, c]; GRAD_W = sum_c Y_c gsum[L, c] + gW[L] (when WEIGHT_GRAD)."""
    pb = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    acc_t = GRAD_SUM.dtype.element_ty
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    label = tl.load(LABELS + b * slb + _pixel_offset(offs_p, width, slh, slw), mask=pmask, other=-1)
    valid = pmask & (label >= 0) & (label < R)
    rows = b * R + tl.where(valid, label, 0)
    if HAS_WEIGHT:
        w = tl.load(WEIGHT + b * swb + _pixel_offset(offs_p, width, swh, sww), mask=pmask, other=0.0).to(acc_t)
    else:
        w = tl.full([BLOCK_P], 1.0, acc_t)
    dw = tl.load(GRAD_TOTAL + rows, mask=valid, other=0.0)
    y_pix = Y + b * syb + _pixel_offset(offs_p, width, syh, syw)
    g_pix = GRAD_Y + b * sgb + _pixel_offset(offs_p, width, sgh, sgw)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        cmask = (offs_c < C)[:, None]
        gs = tl.load(GRAD_SUM + rows[None, :] * C + offs_c[:, None], mask=cmask & valid[None, :], other=0.0)
        tl.store(
            g_pix[None, :] + offs_c[:, None].to(tl.int64) * sgc,
            (w[None, :] * gs).to(GRAD_Y.dtype.element_ty),
            mask=cmask & pmask[None, :],
        )
        if WEIGHT_GRAD:
            y = tl.load(y_pix[None, :] + offs_c[:, None].to(tl.int64) * syc, mask=cmask & pmask[None, :], other=0.0)
            dw += tl.sum(y.to(acc_t) * gs, axis=0)
    if WEIGHT_GRAD:
        tl.store(GRAD_W + b * sdb + _pixel_offset(offs_p, width, sdh, sdw), dw.to(GRAD_W.dtype.element_ty), mask=pmask)


def _plane_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, row, column) strides of a (B, H, W) or (B, C, H, W) tensor (any C: the channel stride
    is dropped, so a placeholder needs no slicing, which fake CUDA tensors on a CPU-only torch refuse)."""
    sb, _, sh, sw = pixel_strides(t if t.dim() == 4 else t.unsqueeze(1))
    return sb, sh, sw


def _row_width(*tensors: torch.Tensor) -> int:
    """H * W when every tensor's pixels form one strided axis (contiguous, channels-last,
    column-sliced), else W."""
    t0 = tensors[0]
    H, W = t0.shape[-2], t0.shape[-1]
    for t in tensors:
        _, _, sh, sw = pixel_strides(t if t.dim() == 4 else t.unsqueeze(1))
        if sh != W * sw:
            return W
    return H * W


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block_pixels(pixels: int, device: torch.device) -> int:
    # The interpreter pays per program instance, so CPU runs use few, large blocks.
    cap = 4096 if device.type == "cpu" else 512
    return min(cap, triton.next_power_of_2(pixels))


def _block_channels(channels: int) -> int:
    # Channels beyond 8 loop in the kernels: a (BLOCK_C, BLOCK_P) tile stays within registers.
    return min(8, triton.next_power_of_2(channels))


def _block_regions(regions: int) -> int:
    return min(256, triton.next_power_of_2(regions))


MAX_BATCH = 65535  # the batch runs on grid axis 1, which CUDA caps at 65535


def _check_batch(batch: int) -> None:
    if batch > MAX_BATCH:
        raise ValueError(f"region_mean (triton): batch must be at most {MAX_BATCH}, got {batch}")


def _reduce(X, labels, weight, num_regions: int, width: int, with_total: bool) -> torch.Tensor:
    B, C, H, W = X.shape
    P = H * W
    table = torch.zeros((B, num_regions, C + 1), device=X.device, dtype=_accumulate_dtype(X.dtype))
    block_p = _block_pixels(P, X.device)
    w = weight if weight is not None else X  # a placeholder pointer, never read without HAS_WEIGHT
    _reduce_kernel[(triton.cdiv(P, block_p), B)](
        X,
        *pixel_strides(X),
        labels,
        *_plane_strides(labels),
        w,
        *_plane_strides(w),
        table,
        C,
        num_regions,
        P,
        width,
        HAS_WEIGHT=weight is not None,
        WITH_TOTAL=with_total,
        BLOCK_P=block_p,
        BLOCK_C=_block_channels(C),
        num_warps=4,
    )
    return table


def region_mean_forward(image: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, num_regions: int):
    """-> painted (B, C, H, W) in the image's layout, means (B, R, C) and totals (B, R) in the
    accumulator dtype. Inputs of any strides."""
    B, C, H, W = image.shape
    _check_batch(B)
    P, R = H * W, num_regions
    acc = _accumulate_dtype(image.dtype)
    painted = torch.empty_like(image)
    width = _row_width(image, labels, painted, *([weight] if weight is not None else []))
    with device_guard(image.device):
        table = _reduce(image, labels, weight, R, width, with_total=True)
        means = torch.empty((B, R, C), device=image.device, dtype=acc)
        totals = torch.empty((B, R), device=image.device, dtype=acc)
        block_r = _block_regions(R)
        _finalize_forward_kernel[(triton.cdiv(R, block_r), B)](
            table, means, totals, C, R, BLOCK_R=block_r, BLOCK_C=_block_channels(C)
        )
        block_p = _block_pixels(P, image.device)
        _paint_forward_kernel[(triton.cdiv(P, block_p), B)](
            labels,
            *_plane_strides(labels),
            means,
            painted,
            *pixel_strides(painted),
            C,
            R,
            P,
            width,
            BLOCK_P=block_p,
            BLOCK_C=_block_channels(C),
            num_warps=4,
        )
    return painted, means, totals


def region_mean_backward(grad_painted, grad_means, image, labels, weight, means, totals, weight_grad: bool):
    """-> grad_image in the image's layout, grad_weight in the weight's (an empty tensor unless
    weight_grad and a weight is given)."""
    B, C, H, W = image.shape
    _check_batch(B)
    P, R = H * W, means.shape[1]
    gP = grad_painted.to(image.dtype)
    means, totals = means.contiguous(), totals.contiguous()  # (B, R, C), (B, R): small
    gm = grad_means.to(means.dtype).contiguous() if grad_means is not None else None
    weight_grad = weight_grad and weight is not None
    grad_image = torch.empty_like(image)
    grad_weight = torch.empty_like(weight) if weight_grad else image.new_empty((0,))
    extra = [weight] if weight is not None else []
    width = _row_width(image, labels, gP, grad_image, *extra, *([grad_weight] if weight_grad else []))
    with device_guard(image.device):
        table = _reduce(gP, labels, None, R, width, with_total=False)
        grad_sum = torch.empty_like(means)
        grad_total = torch.empty_like(totals)
        block_r = _block_regions(R)
        _finalize_backward_kernel[(triton.cdiv(R, block_r), B)](
            table,
            gm if gm is not None else means,  # placeholder when absent, never read
            means,
            totals,
            grad_sum,
            grad_total,
            C,
            R,
            HAS_GRAD_MEANS=gm is not None,
            BLOCK_R=block_r,
            BLOCK_C=_block_channels(C),
        )
        w = weight if weight is not None else image  # placeholder, never read without HAS_WEIGHT
        gw = grad_weight if weight_grad else image
        block_p = _block_pixels(P, image.device)
        _paint_backward_kernel[(triton.cdiv(P, block_p), B)](
            labels,
            *_plane_strides(labels),
            image,
            *pixel_strides(image),
            w,
            *_plane_strides(w),
            grad_sum,
            grad_total,
            grad_image,
            *pixel_strides(grad_image),
            gw,
            *_plane_strides(gw),
            C,
            R,
            P,
            width,
            HAS_WEIGHT=weight is not None,
            WEIGHT_GRAD=weight_grad,
            BLOCK_P=block_p,
            BLOCK_C=_block_channels(C),
            num_warps=4,
        )
    return grad_image, grad_weight

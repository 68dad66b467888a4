"""Triton kernels of scft_attention: out = residual + softmax(q k^T * scale) v, one head.

The regime is SCFT's (Lee et al., CVPR 2020): one head, d and dv of 500 to 1000 (992 in the paper),
N, M = 256 to 4096 tokens. Two implementations, selected by REFCOLOR_SCFT_IMPL=gemm|flash (read at
each call; default DEFAULT_IMPL):

"gemm" (default): S = scale * q k^T by cuBLAS (torch.baddbmm); a Triton kernel turns each row of
S into P = softmax(S), in place (float32 math, P stored in the input dtype); then
out = torch.baddbmm(residual, P, v), the residual add riding in cuBLAS's epilogue (beta = 1). P is
saved for the backward, four more GEMMs around one row-wise Triton kernel:
    dV = P^T dO,  dP = dO V^T,  dS = scale * P * (dP - rowsum(P * dP))  (Triton, in place over dP),
    dQ = dS K,  dK = dS^T Q.
Why GEMMs at d ~ 1000: a flash-style kernel keeps its output accumulator, BLOCK_N x dv in float32,
in registers; at dv = 992 and BLOCK_N = 64 that is 248 KiB, an SM's whole register file (256 KiB)
before the S tile, the operands and the pipelining buffers. It has to split dv over programs, and
each program recomputes its S tiles (2 N M d FLOPs): with 128-wide dv blocks that is 8x the q k^T
work, 4.5x the FLOPs of the whole forward. The GEMM route pays instead for the N x M round trip
(write S, read S and write P, read P): at N = M = 4096, d = 512 in bf16 about 130 MB per sample
against 34 GFLOP, i.e. memory time about equal to tensor-core time on an H100, and less than that
share at d = 992; it also keeps both GEMMs on cuBLAS, and the backward needs no recomputation.

"flash": one forward kernel streams K/V blocks with the online softmax, tiling d in BLOCK_D chunks
for q.k and splitting dv across programs (grid: dv blocks x N blocks x B flattened on axis 0, so B
has no 65535 limit); each program recomputes its S tiles; it writes out (+ residual) and the row
logsumexp, never the N x M matrix. On CUDA its tile sizes are autotuned per (N, M, d, dv). Its
backward recomputes P with the gemm forward (see attention_backward for why not from the
logsumexp) and runs the gemm backward. It is the candidate for small dv, or sequences whose
N x M matrix would not fit; benchmarks/gpu_scft_attention.py measures both.

Every kernel accumulates in float32 (float64 for float64 inputs). float32 tl.dot follows torch's
own matmul setting, read at each call: TF32 (tensor cores, 10-bit mantissa) exactly when
torch.backends.cuda.matmul.allow_tf32 is set, else input_precision="ieee" (Triton's default would be
TF32 always, against torch's default); for 16-bit inputs the flag changes nothing. Rows, columns, d
and dv are masked, so no size needs to be a multiple of a block; offsets are int64.

The logits are scaled before they are stored: S = scale * q k^T comes out of the GEMM (cuBLAS applies
alpha in float32), so 16-bit logits overflow only where the scaled ones would; unscaled, |q.k| passes
65504 (float16's largest) at d ~ 1000 with entries of about 8. Every launch runs under
torch.cuda.device(<the tensors' device>): Triton launches on the current device.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from refcolor.kernels import device_guard

IMPLS = ("gemm", "flash")
IMPL_ENV_VAR = "REFCOLOR_SCFT_IMPL"
DEFAULT_IMPL = "gemm"


def selected_impl() -> str:
    impl = os.environ.get(IMPL_ENV_VAR, DEFAULT_IMPL)
    if impl not in IMPLS:
        raise ValueError(f"scft_attention: {IMPL_ENV_VAR}={impl!r}; expected one of {IMPLS}")
    return impl


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision for `dtype` operands: "tf32" exactly when torch's own float32
    matmuls may use TF32 (torch.backends.cuda.matmul.allow_tf32, which
    torch.set_float32_matmul_precision("high") also sets), else "ieee"."""
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def scaled_logits(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * q k^T (B, N, M) in q's dtype, scaled inside the GEMM (beta = 0: the uninitialised
    input is never read)."""
    B, N, M = q.shape[0], q.shape[1], k.shape[1]
    out = torch.empty((B, N, M), device=q.device, dtype=q.dtype)
    return torch.baddbmm(out, q, k.transpose(1, 2), beta=0, alpha=scale)


# ----------------------------------------------------------------------------- row-wise kernels
# Each program owns ROWS rows of a contiguous (rows, M) matrix and walks them in BLOCK_M chunks.
# SINGLE_PASS (M <= BLOCK_M): the row stays in registers, read once and written once. Otherwise
# two passes: the row statistics, then the write.


@triton.jit
def _row_tile(row0, chunk, n_rows, M, ROWS: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = row0 + tl.arange(0, ROWS).to(tl.int64)
    cols = chunk + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    return rows[:, None] * M + cols[None, :], row_ok[:, None] & (cols < M)[None, :], row_ok


@triton.jit
def _scaled_logits(S, offs, mask, row_ok, scale):
    """scale * S in the accumulation dtype (scale's); -inf in padding columns, 0 in padding rows
    (which keeps their max finite: -inf - -inf would be NaN). The padding is set after the scaling:
    -inf * scale would be +inf for scale < 0 and NaN for scale = 0."""
    x = tl.load(S + offs, mask=mask, other=0.0).to(scale.dtype) * scale
    x = tl.where(mask, x, float("-inf"))
    return tl.where(row_ok[:, None], x, 0.0)


@triton.jit
def _softmax_rows_kernel(
    S,
    P,
    n_rows,
    M,
    SCALE,
    ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    SINGLE_PASS: tl.constexpr,
):
    """P = softmax(scale * S) row-wise (P may be S: every element is read before it is written)."""
    scale = tl.load(SCALE)
    row0 = tl.program_id(0).to(tl.int64) * ROWS
    if SINGLE_PASS:
        offs, mask, row_ok = _row_tile(row0, 0, n_rows, M, ROWS, BLOCK_M)
        x = _scaled_logits(S, offs, mask, row_ok, scale)
        e = tl.exp(x - tl.max(x, axis=1)[:, None])  # padding columns: exp(-inf) = 0
        tl.store(P + offs, (e / tl.sum(e, axis=1)[:, None]).to(P.dtype.element_ty), mask=mask)
    else:
        row_max = tl.full([ROWS], float("-inf"), scale.dtype)
        total = tl.zeros([ROWS], scale.dtype)
        for chunk in range(0, M, BLOCK_M):  # online max and sum
            offs, mask, row_ok = _row_tile(row0, chunk, n_rows, M, ROWS, BLOCK_M)
            x = _scaled_logits(S, offs, mask, row_ok, scale)
            new_max = tl.maximum(row_max, tl.max(x, axis=1))
            total = total * tl.exp(row_max - new_max) + tl.sum(tl.exp(x - new_max[:, None]), axis=1)
            row_max = new_max
        for chunk in range(0, M, BLOCK_M):
            offs, mask, row_ok = _row_tile(row0, chunk, n_rows, M, ROWS, BLOCK_M)
            x = _scaled_logits(S, offs, mask, row_ok, scale)
            tl.store(P + offs, (tl.exp(x - row_max[:, None]) / total[:, None]).to(P.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_grad_kernel(
    P,
    DP,
    DS,
    n_rows,
    M,
    SCALE,
    ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    SINGLE_PASS: tl.constexpr,
):
    """DS = scale * P * (DP - rowsum(P * DP)): the gradient with respect to the unscaled logits
    (DS may be DP)."""
    acc_t = SCALE.dtype.element_ty
    scale = tl.load(SCALE)
    row0 = tl.program_id(0).to(tl.int64) * ROWS
    if SINGLE_PASS:
        offs, mask, _ = _row_tile(row0, 0, n_rows, M, ROWS, BLOCK_M)
        p = tl.load(P + offs, mask=mask, other=0.0).to(acc_t)
        dp = tl.load(DP + offs, mask=mask, other=0.0).to(acc_t)
        delta = tl.sum(p * dp, axis=1)
        tl.store(DS + offs, (scale * p * (dp - delta[:, None])).to(DS.dtype.element_ty), mask=mask)
    else:
        delta = tl.zeros([ROWS], acc_t)
        for chunk in range(0, M, BLOCK_M):
            offs, mask, _ = _row_tile(row0, chunk, n_rows, M, ROWS, BLOCK_M)
            p = tl.load(P + offs, mask=mask, other=0.0).to(acc_t)
            dp = tl.load(DP + offs, mask=mask, other=0.0).to(acc_t)
            delta += tl.sum(p * dp, axis=1)
        for chunk in range(0, M, BLOCK_M):
            offs, mask, _ = _row_tile(row0, chunk, n_rows, M, ROWS, BLOCK_M)
            p = tl.load(P + offs, mask=mask, other=0.0).to(acc_t)
            dp = tl.load(DP + offs, mask=mask, other=0.0).to(acc_t)
            tl.store(DS + offs, (scale * p * (dp - delta[:, None])).to(DS.dtype.element_ty), mask=mask)


def scale_tensor(scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The scale as a 1-element tensor in the accumulation dtype: Triton passes Python floats as
    float32, which would round it for float64 inputs. torch.full launches a fill, with no host copy."""
    return torch.full((1,), scale, dtype=accumulate_dtype(dtype), device=device)


def _row_config(M: int, device: torch.device, block_m: int | None):
    """(ROWS, BLOCK_M, num_warps) of the row-wise kernels."""
    if device.type == "cpu":  # the interpreter pays per program instance: few, wide programs
        block_m = block_m or min(triton.next_power_of_2(M), 256)
        return max(1, 1024 // block_m), block_m, 1
    # GPU: a row of up to 8192 float32 stays in registers (single pass); short rows are packed
    # several to a program so each moves >= 2048 elements.
    block_m = block_m or min(triton.next_power_of_2(M), 8192)
    rows = max(1, min(16, 2048 // block_m))
    elements = rows * block_m
    return rows, block_m, 4 if elements <= 2048 else 8 if elements <= 4096 else 16


def _launch_rows(kernel, matrix: torch.Tensor, pointers, scale: float, block_m: int | None) -> None:
    """One program per ROWS rows of `matrix` (B, N, M)."""
    B, N, M = matrix.shape
    rows, block_m, warps = _row_config(M, matrix.device, block_m)
    with device_guard(matrix.device):
        kernel[(triton.cdiv(B * N, rows),)](
            *pointers,
            B * N,
            M,
            scale_tensor(scale, matrix.dtype, matrix.device),
            ROWS=rows,
            BLOCK_M=block_m,
            SINGLE_PASS=M <= block_m,
            num_warps=warps,
        )


def softmax_rows_(logits: torch.Tensor, scale: float, *, block_m: int | None = None) -> torch.Tensor:
    """softmax(scale * logits) over the last dim, written over `logits` (B, N, M) contiguous."""
    _launch_rows(_softmax_rows_kernel, logits, (logits, logits), scale, block_m)
    return logits


def softmax_grad_(probs: torch.Tensor, grad_probs: torch.Tensor, scale: float, *, block_m: int | None = None):
    """scale * P * (dP - rowsum(P * dP)) written over `grad_probs` (B, N, M) contiguous."""
    _launch_rows(_softmax_grad_kernel, probs, (probs, grad_probs, grad_probs), scale, block_m)
    return grad_probs


# ----------------------------------------------------------------------------- flash forward


@triton.jit
def _flash_forward_kernel(
    Q,
    K,
    V,
    R,
    O,  # noqa: E741  the output pointer in FlashAttention's notation, beside Q, K, V
    LSE,
    N,
    M,
    D,
    DV,
    SCALE,
    HAS_RESIDUAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    # dv blocks vary fastest, so the programs sharing a (sample, row block) run together and
    # find its q rows and the K/V stream in L2.
    pid = tl.program_id(0).to(tl.int64)
    n_nblocks, n_dvblocks = tl.cdiv(N, BLOCK_N), tl.cdiv(DV, BLOCK_DV)
    dv_block = pid % n_dvblocks
    n_block = (pid // n_dvblocks) % n_nblocks
    b = pid // (n_dvblocks * n_nblocks)
    acc_t = LSE.dtype.element_ty
    scale = tl.load(SCALE)
    rows = n_block * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    dv_cols = dv_block * BLOCK_DV + tl.arange(0, BLOCK_DV)
    dv_ok = dv_cols < DV
    Qb, Kb, Vb = Q + b * N * D, K + b * M * D, V + b * M * DV

    row_max = tl.full([BLOCK_N], float("-inf"), acc_t)
    total = tl.zeros([BLOCK_N], acc_t)
    acc = tl.zeros([BLOCK_N, BLOCK_DV], acc_t)
    for key0 in range(0, M, BLOCK_M):
        keys = key0 + tl.arange(0, BLOCK_M).to(tl.int64)  # keys * D passes 2^31 for M * d > 2^31
        key_ok = keys < M
        # S tile = q k^T over d in BLOCK_D chunks; q is re-read per key block (it cannot stay in
        # registers at d ~ 1000) and comes from L1/L2.
        s = tl.zeros([BLOCK_N, BLOCK_M], acc_t)
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + tl.arange(0, BLOCK_D)
            dim_ok = dims < D
            q = tl.load(Qb + rows[:, None] * D + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
            kt = tl.load(Kb + keys[None, :] * D + dims[:, None], mask=dim_ok[:, None] & key_ok[None, :], other=0.0)
            s = tl.dot(q, kt, acc=s, input_precision=DOT_PRECISION, out_dtype=acc_t)
        s = tl.where(key_ok[None, :], s * scale, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, axis=1))  # finite: every block has a valid key
        p = tl.exp(s - new_max[:, None])
        correction = tl.exp(row_max - new_max)
        total = total * correction + tl.sum(p, axis=1)
        v = tl.load(Vb + keys[:, None] * DV + dv_cols[None, :], mask=key_ok[:, None] & dv_ok[None, :], other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc=acc * correction[:, None], input_precision=DOT_PRECISION, out_dtype=acc_t)
        row_max = new_max
    out = acc / total[:, None]
    tile = (b * N + rows[:, None]) * DV + dv_cols[None, :]
    tile_ok = row_ok[:, None] & dv_ok[None, :]
    if HAS_RESIDUAL:
        out += tl.load(R + tile, mask=tile_ok, other=0.0).to(acc_t)
    tl.store(O + tile, out.to(O.dtype.element_ty), mask=tile_ok)
    if dv_block == 0:
        tl.store(LSE + b * N + rows, row_max + tl.log(total), mask=row_ok)


# Interpreter (CPU, tests): small blocks that still exercise every loop and mask.
_INTERPRETER_BLOCKS = {"BLOCK_N": 32, "BLOCK_M": 16, "BLOCK_D": 32, "BLOCK_DV": 32}


def _configs(blocks: list[tuple[int, int, int, int, int, int]]) -> list:
    names = ("BLOCK_N", "BLOCK_M", "BLOCK_D", "BLOCK_DV")
    return [triton.Config(dict(zip(names, c[:4], strict=True)), num_warps=c[4], num_stages=c[5]) for c in blocks]


# CUDA candidates (BLOCK_N, BLOCK_M, BLOCK_D, BLOCK_DV, warps, stages), autotuned per shape: not yet
# measured here. Wider dv blocks mean fewer recomputations of S but a larger accumulator in
# registers (BLOCK_N x BLOCK_DV float32 over the program's threads).
_CUDA_CONFIGS = {
    "16bit": _configs(
        [(128, 64, 64, 128, 8, 2), (64, 64, 64, 256, 8, 2), (128, 32, 64, 256, 8, 2), (64, 64, 64, 128, 4, 3)]
    ),
    "float32": _configs([(64, 32, 32, 64, 4, 2), (64, 64, 32, 128, 8, 2), (32, 64, 32, 128, 4, 2)]),
    "float64": _configs([(32, 32, 16, 32, 4, 1), (64, 32, 16, 32, 4, 1)]),
}


@functools.cache
def _autotuned_flash_kernel(kind: str):
    # Every argument that changes the best tiles is in the key (the autotuner adds the tensors'
    # dtypes); B only scales the grid.
    return triton.autotune(_CUDA_CONFIGS[kind], key=["N", "M", "D", "DV", "HAS_RESIDUAL", "DOT_PRECISION"])(
        _flash_forward_kernel
    )


def flash_forward(q, k, v, residual, scale: float, **blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """-> out (B, N, dv), lse (B, N) in the accumulation dtype. `blocks` (BLOCK_N, BLOCK_M, BLOCK_D,
    BLOCK_DV) fixes the tile sizes instead of the defaults (interpreter) or the autotuner (CUDA)."""
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    B, N, D = q.shape
    M, DV = v.shape[1], v.shape[2]
    out = torch.empty((B, N, DV), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, N), device=q.device, dtype=accumulate_dtype(q.dtype))
    res = residual.contiguous() if residual is not None else out  # never read without HAS_RESIDUAL
    args = (q, k, v, res, out, lse, N, M, D, DV, scale_tensor(scale, q.dtype, q.device))
    if q.device.type == "cuda" and not blocks:
        kind = "float64" if q.dtype == torch.float64 else "float32" if q.dtype == torch.float32 else "16bit"
        kernel = _autotuned_flash_kernel(kind)
    else:
        kernel, blocks = _flash_forward_kernel, {**_INTERPRETER_BLOCKS, **blocks}

    def grid(meta):
        return (B * triton.cdiv(N, meta["BLOCK_N"]) * triton.cdiv(DV, meta["BLOCK_DV"]),)

    with device_guard(q.device):
        kernel[grid](*args, HAS_RESIDUAL=residual is not None, DOT_PRECISION=dot_precision(q.dtype), **blocks)
    return out, lse


# ----------------------------------------------------------------------------- op entry points


def attention_forward(q, k, v, residual, scale: float, impl: str, *, block_m: int | None = None):
    """-> out (B, N, dv) and what the backward needs: P (B, N, M) for "gemm"; an empty tensor for
    "flash", whose backward recomputes P."""
    if impl == "flash":
        out, _ = flash_forward(q, k, v, residual, scale)
        return out, q.new_empty((0,))
    probs = softmax_rows_(scaled_logits(q, k, scale), 1.0, block_m=block_m)
    out = torch.bmm(probs, v) if residual is None else torch.baddbmm(residual, probs, v)
    return out, probs


def attention_backward(grad_out, q, k, v, probs, scale: float, *, block_m: int | None = None):
    """-> grad_q, grad_k, grad_v. An empty `probs` (flash) is recomputed as in the gemm forward.

    The recomputation normalises afresh instead of using the flash kernel's logsumexp: the GEMM's
    logits differ from the kernel's by rounding (in 16-bit, S itself is rounded), so exp(S - lse)
    rows would not sum to 1, which tripled the gradient error against float64 under the
    interpreter; a fresh softmax costs the same single pass over S."""
    if probs.numel() == 0:
        probs = softmax_rows_(scaled_logits(q, k, scale), 1.0, block_m=block_m)
    grad_out = grad_out.to(q.dtype)
    grad_v = torch.bmm(probs.transpose(1, 2), grad_out)
    grad_logits = softmax_grad_(probs, torch.bmm(grad_out, v.transpose(1, 2)), scale, block_m=block_m)
    grad_q = torch.bmm(grad_logits, k)
    grad_k = torch.bmm(grad_logits.transpose(1, 2), q)
    return grad_q, grad_k, grad_v

"""scft_attention's CUDA row kernels (cuda/scft_attention_kernel.cu: the fused softmax and the fused
dS = scale * P * (dP - rowsum(P * dP)) pass), run block by block and thread by thread on the host by
torch.ops.refcolor.scft_attention_cuda_emulation through the same scft_attention_math.h helpers the
kernels call: the row of a block, a thread's strided elements and their tail guard, the warp and
block reductions, the backward's row blocks and their mapping onto the (B, N, M) probabilities.
Checked against float64 PyTorch with flash-attention's rule (at most twice the error of the
same-precision PyTorch path, plus a few ulps), for every storage dtype the kernels take (16-bit
storage with float32 math, as on the GPU). The shapes leave partial thread sweeps (M = 257 is
one full sweep of 256 threads and a tail of 1; M = 29 leaves seven warps idle; M = 5000 takes 20
sweeps), M = 1, and several row blocks of the backward (a small scratch, with a shorter last
block), so a wrong bound or index fails here, without a GPU."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import usable

# (B, N, M, scale, backward rows per block or None for the glue's 2^23-element scratch, transposed
# inputs). Row blocks of the backward: 2 + 2 + 1 (m1), 3 + 3 + 1, 3 + 1, 4 + 4 + 2, 1 each, and one.
CASES = {
    "m1": (2, 5, 1, 0.7, 2, False),
    "one_token": (1, 1, 1, 0.7, None, False),
    "m29_idle_warps": (2, 7, 29, 0.7, 3, False),
    "m256_exact": (2, 4, 256, -0.4, 3, False),
    "m257_tail_of_one": (3, 10, 257, 0.7, 4, False),
    "m600_row_at_a_time": (2, 6, 600, 0.3, 1, True),
    "m5000_long_rows": (2, 3, 5000, 0.7, None, False),
}
GLUE_SCRATCH_ELEMENTS = 1 << 23  # kScratchElements of cuda/scft_attention_cuda.cpp
# Floor of the rule, in units of the dtype's eps times the largest exact value: the same-precision
# PyTorch path can be exact by chance on tiny rows (M = 1: P = 1, dS = 0).
ULPS = 2


def independent_float64(logits, grad_probs, scale):
    s = scale * logits.double()
    e = torch.exp(s - s.amax(-1, keepdim=True))
    probs = e / e.sum(-1, keepdim=True)
    dp = grad_probs.double()
    return probs, scale * probs * (dp - (probs * dp).sum(-1, keepdim=True))


def same_precision_torch(logits, grad_probs, scale):
    probs = torch.softmax(scale * logits, -1)
    return probs, scale * probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))


def scratch_elements(B, M, rows_per_block):
    """A scratch that holds `rows_per_block` rows of all B samples and part of one more."""
    return GLUE_SCRATCH_ELEMENTS if rows_per_block is None else rows_per_block * B * M + (B * M + 1) // 2


def make(B, N, M, dtype, transposed, generator):
    """Peaked logits (as trained attention is) and a random dP, optionally as (B, M, N)^T views."""
    shape = (B, M, N) if transposed else (B, N, M)
    logits = 3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    grad_probs = torch.randn(shape, generator=generator, dtype=torch.float64)
    if transposed:
        logits, grad_probs = logits.transpose(1, 2), grad_probs.transpose(1, 2)
    return logits.to(dtype), grad_probs.to(dtype)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=["f32", "f64", "f16", "bf16"]
)
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_row_kernels_emulated_on_host(case, dtype):
    if not usable("cpp", "cpu"):
        pytest.skip("compiled extension not built")
    B, N, M, scale, rows_per_block, transposed = CASES[case]
    logits, grad_probs = make(B, N, M, dtype, transposed, torch.Generator().manual_seed(N * M))
    probs, grad_logits = torch.ops.refcolor.scft_attention_cuda_emulation(
        logits, grad_probs, scale, scratch_elements(B, M, rows_per_block)
    )
    assert probs.shape == grad_logits.shape == (B, N, M)
    assert probs.dtype == grad_logits.dtype == dtype
    exact = independent_float64(logits, grad_probs, scale)
    naive = same_precision_torch(logits, grad_probs, scale)
    for name, a, r, e in zip(("probs", "grad_logits"), (probs, grad_logits), naive, exact, strict=True):
        err = (a.double() - e).abs().max().item()
        bound = 2 * (r.double() - e).abs().max().item() + ULPS * torch.finfo(dtype).eps * e.abs().max().item()
        assert err <= bound, f"{name}: max error {err:.3e} > {bound:.3e}"


@pytest.mark.parametrize(
    "make_args, words",
    [
        (lambda s, g: (s[0], g[0], 1.0, 8), ["logits", "(B, N, M)", "[3, 4]"]),
        (lambda s, g: (s[:, :0], g[:, :0], 1.0, 8), ["logits", "non-empty", "[2, 0, 4]"]),
        (lambda s, g: (s, g[:, :2], 1.0, 8), ["grad_probs", "[2, 3, 4]", "[2, 2, 4]"]),
        (lambda s, g: (s, g.float(), 1.0, 8), ["grad_probs", "Double", "Float"]),
        (lambda s, g: (s, g, 1.0, 0), ["scratch_elements", ">= 1", "0"]),
    ],
    ids=["rank", "empty", "shape", "dtype", "scratch"],
)
def test_bad_arguments(make_args, words):
    if not usable("cpp", "cpu"):
        pytest.skip("compiled extension not built")
    s = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError) as info:
        torch.ops.refcolor.scft_attention_cuda_emulation(*make_args(s, s.clone()))
    for w in words:
        assert w in str(info.value), (w, str(info.value))

"""scft_attention: every backend against an independent float64 implementation (an explicit
einsum / exp / sum written here, differentiated by autograd): the reference within a fixed
per-dtype tolerance, the other backends within twice the error of the same-precision naive path.
Odd shapes (d from 1 to 1024, N and M no multiple of any tile, B = 1 and B > 1, with and without
residual), every gradient, input layouts (permuted, sequence-first, channels-last features,
sliced) with the layouts of the results, both Triton implementations (under the interpreter on
CPU), the row kernels, the attention map from the backend that was asked for, bad inputs, and the
custom-op registration (opcheck, torch.compile, gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from refcolor.ops.scft_attention import PREFERENCE, PREFERENCE_NO_GRAD, scft_attention
from tests.helpers import devices, rel_err, usable

IMPLS = ("gemm", "flash")
F64_TOL = 1e-10
# The reference (naive) path against the independent float64 implementation. float32: measured
# 5e-8 to 1.8e-6 on CASES (the largest at M = 4100), bound 1e-5. 16-bit (GPU only, not yet
# measured): bounds of about 20 ulps of the dtype.
REFERENCE_TOL = {torch.float64: F64_TOL, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1.6e-1}

# name: (B, N, M, d, dv, with_residual). The paper's d = 992 with odd N and M, d = 1 and d = 1024,
# and N = 300, M = 4100, which the cpp backend splits into row blocks of 128 (two full, one tail);
# the interpreter (~15 ms per program instance) gets smaller, still odd shapes.
CASES = {
    "odd_b1": (1, 250, 196, 992, 992, True),
    "odd_b3": (3, 250, 196, 992, 992, True),
    "odd_b3_no_residual_dv300": (3, 250, 196, 992, 300, False),
    "one_token": (1, 1, 1, 992, 992, True),
    "d1": (2, 33, 47, 1, 5, True),
    "d1024_no_residual": (2, 70, 53, 1024, 24, False),
    "row_blocks_b3": (3, 300, 4100, 8, 12, True),
}
INTERPRETER_CASES = {
    "odd_b3": (3, 37, 29, 72, 40, True),
    "odd_b1_no_residual": (1, 37, 29, 72, 40, False),
    "long_rows_b2": (2, 5, 70, 20, 33, True),  # several key blocks and d chunks
    "one_token": (1, 1, 1, 72, 40, True),
}
# CUDA: also B N M above the backward's 2^23-element scratch, so dS is formed in two row blocks.
GPU_CASES = {**CASES, "cuda_row_blocks": (2, 1100, 4000, 16, 16, True)}


def make_inputs(B, N, M, d, dv, with_residual, seed=0):
    """float64 CPU tensors; queries scaled up so that the attention is peaked, as trained ones are."""
    g = torch.Generator().manual_seed(seed)
    q = 2 * torch.randn(B, N, d, generator=g, dtype=torch.float64)
    k = torch.randn(B, M, d, generator=g, dtype=torch.float64)
    v = torch.randn(B, M, dv, generator=g, dtype=torch.float64)
    residual = torch.randn(B, N, dv, generator=g, dtype=torch.float64) if with_residual else None
    grad_out = torch.randn(B, N, dv, generator=g, dtype=torch.float64)
    return (q, k, v, residual), grad_out


def independent_float64(inputs, grad_out, scale=None):
    """(out, grad_q, grad_k, grad_v[, grad_residual]) and the attention map, in float64 from an
    explicit einsum / exp / sum (no torch.softmax, no bmm, no refcolor code)."""
    tensors = [None if t is None else t.detach().double().requires_grad_() for t in inputs]
    q, k, v, residual = tensors
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.einsum("bnd,bmd->bnm", q, k) * scale
    e = torch.exp(logits - logits.amax(-1, keepdim=True).detach())  # the shift has no gradient
    attention = e / e.sum(-1, keepdim=True)
    out = torch.einsum("bnm,bme->bne", attention, v)
    if residual is not None:
        out = out + residual
    wrt = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(out, wrt, grad_out.to(device=out.device, dtype=torch.float64))
    return (out.detach(), *grads), attention.detach()


def run(backend, inputs, grad_out, dtype, device="cpu", **kwargs):
    """Forward and backward through `backend` -> (out, dq, dk, dv[, d_residual])."""
    tensors = [None if t is None else t.to(device=device, dtype=dtype).requires_grad_() for t in inputs]
    out = scft_attention(*tensors, backend=backend, **kwargs)
    wrt = [t for t in tensors if t is not None]
    return (out, *torch.autograd.grad(out, wrt, grad_out.to(device=device, dtype=dtype)))


NAMES = ("out", "grad_q", "grad_k", "grad_v", "grad_residual")


# sdpa is PyTorch's own fused kernel, not ours, and is held to a looser bound: on this CPU its float32
# backward measured 1.4x to 3.7x the naive path's error at d = 992 (4 seeds), and at M = 1 it leaves
# ~1e-6 where the exact grad_q and grad_k are 0 (P = 1 cancels exactly in the naive path).
RULE = {"sdpa": (4, 32)}  # backend: (factor, ulps)


def assert_twice_reference_rule(actual, same_precision, exact, backend="triton"):
    """float64: close to the float64 result; lower precisions: error against it at most twice the
    same-precision naive path's (plus one ulp of the dtype, for results that are exact in both)."""
    factor, ulps = RULE.get(backend, (2, 1))
    for name, a, r, e in zip(NAMES[: len(actual)], actual, same_precision, exact, strict=True):
        assert a.shape == e.shape and a.dtype == r.dtype, name
        err = rel_err(a, e)
        if a.dtype == torch.float64:
            assert err <= F64_TOL, f"{name}: relative error {err:.2e}"
        else:
            bound = factor * rel_err(r, e) + ulps * torch.finfo(a.dtype).eps
            assert err <= bound, f"{name}: {err:.2e} > {bound:.2e}"


def assert_reference_within_tolerance(actual, exact):
    for name, a, e in zip(NAMES[: len(actual)], actual, exact, strict=True):
        assert a.shape == e.shape, name
        err = rel_err(a, e)
        assert err <= REFERENCE_TOL[a.dtype], f"{name}: relative error {err:.2e}"


def check_against_float64(backend, case, dtype, device, cases=CASES):
    inputs, grad_out = make_inputs(*cases[case], seed=len(case))
    inputs = [None if t is None else t.to(device) for t in inputs]
    exact, _ = independent_float64(inputs, grad_out)
    actual = run(backend, inputs, grad_out, dtype, device)
    if backend == "reference":
        assert_reference_within_tolerance(actual, exact)
    else:
        same_precision = run("reference", inputs, grad_out, dtype, device)
        assert_twice_reference_rule(actual, same_precision, exact, backend)


def compiled_backend_params():
    for device in devices():
        for backend in ("reference", "cpp", "cuda", "sdpa", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter gets its own shapes below
            if (backend, device) in (("cpp", "cuda"), ("cuda", "cpu")):
                continue
            for impl in IMPLS if backend == "triton" else ("-",):
                yield pytest.param(backend, impl, device, id=f"{backend}-{impl}-{device}".replace("--", "-"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend,impl,device", list(compiled_backend_params()))
def test_backend_matches_float64_reference(backend, impl, device, case, dtype, monkeypatch):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    if backend == "triton":
        monkeypatch.setenv("REFCOLOR_SCFT_IMPL", impl)
    check_against_float64(backend, case, dtype, device)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64], ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_triton_interpreter_matches_float64_reference(impl, case, dtype, monkeypatch):
    if not usable("triton", "cpu"):
        pytest.skip("triton not usable on cpu (needs TRITON_INTERPRET=1)")
    monkeypatch.setenv("REFCOLOR_SCFT_IMPL", impl)
    check_against_float64("triton", case, dtype, "cpu", INTERPRETER_CASES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=["f16", "bf16", "f32"])
@pytest.mark.parametrize("case", ["odd_b3", "odd_b3_no_residual_dv300", "one_token", "d1", "cuda_row_blocks"])
@pytest.mark.parametrize(
    "backend,impl", [("reference", "-"), ("cuda", "-"), ("sdpa", "-"), ("triton", "gemm"), ("triton", "flash")]
)
def test_gpu_precisions_within_twice_reference_error(backend, impl, case, dtype, monkeypatch):
    if not usable(backend, "cuda"):
        pytest.skip(f"{backend} not usable on cuda")
    if backend == "triton":
        monkeypatch.setenv("REFCOLOR_SCFT_IMPL", impl)
    check_against_float64(backend, case, dtype, "cuda", GPU_CASES)


def test_cpp_backward_splits_samples_across_threads():
    """Three threads, two samples of three row blocks: every worker's range cuts a sample, so grad_k
    is the sum of per-worker partials (the path a one-thread test run never takes)."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable on cpu")
    inputs, grad_out = make_inputs(2, 300, 4100, 8, 12, True, seed=3)
    exact, _ = independent_float64(inputs, grad_out)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        actual = run("cpp", inputs, grad_out, torch.float64)
    finally:
        torch.set_num_threads(threads)
    assert_twice_reference_rule(actual, exact, exact, "cpp")


@pytest.mark.parametrize("threads", [1, 3])
def test_cpp_inference_forward_without_the_attention_matrix(threads):
    """Without autograd the cpp forward keeps P only block by block (per-thread scratch): same
    values, and the kernel returns no (B, N, M) matrix."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable on cpu")
    inputs, grad_out = make_inputs(3, 300, 4100, 8, 12, True, seed=4)
    (exact, *_), _ = independent_float64(inputs, grad_out)
    q, k, v, r = (t.float() for t in inputs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            out = scft_attention(q, k, v, r, backend="cpp")
        _, probs = torch.ops.refcolor.scft_attention_forward_kernel(q, k, v, r, 0.5, False)
    finally:
        torch.set_num_threads(before)
    same_precision = scft_attention(q, k, v, r, backend="reference")
    assert rel_err(out, exact) <= 2 * rel_err(same_precision, exact) + torch.finfo(torch.float32).eps
    assert probs.numel() == 0


# ----------------------------------------------------------------------------- layouts
# Each input is built in the layout, with the same values: "permuted" (storage (B, c, n), the
# layout of NCHW features viewed as tokens, `f.flatten(2).transpose(1, 2)`), "sequence_first"
# (storage (n, B, c), as nn.MultiheadAttention's), "channels_last_features" (a channels-last
# (B, c, h, w) map viewed as tokens: a view, dense) and "sliced" (rows and channels cut out of a
# larger tensor: not dense).
LAYOUTS = ("permuted", "sequence_first", "channels_last_features", "sliced")
DENSE_LAYOUTS = ("permuted", "sequence_first", "channels_last_features")


def in_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    B, n, c = t.shape
    if layout == "permuted":
        out = t.transpose(1, 2).contiguous().transpose(1, 2)
    elif layout == "sequence_first":
        out = t.transpose(0, 1).contiguous().transpose(0, 1)
    elif layout == "channels_last_features":
        h = next(f for f in range(int(math.sqrt(n)), 0, -1) if n % f == 0)
        features = t.transpose(1, 2).reshape(B, c, h, n // h).contiguous(memory_format=torch.channels_last)
        out = features.flatten(2).transpose(1, 2)
        assert out.data_ptr() == features.data_ptr(), "flatten of channels-last features should be a view"
    elif layout == "sliced":
        big = t.new_zeros(B, n + 3, c + 5)
        big[:, 2 : n + 2, 1 : c + 1] = t
        out = big[:, 2 : n + 2, 1 : c + 1]
    else:
        raise ValueError(layout)
    assert torch.equal(out, t)
    return out


def layout_params():
    for device in devices():
        for backend in ("reference", "cpp", "cuda", "sdpa", "triton"):
            if (backend, device) not in (("cpp", "cuda"), ("cuda", "cpu")):
                yield pytest.param(backend, device, id=f"{backend}-{device}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend,device", list(layout_params()))
def test_input_layouts_forward_backward_and_custom_scale(backend, device, layout):
    """Every backend on inputs in each layout: values against float64, forward and backward. The
    compiled backends also return each gradient in its input's strides (dense layouts; contiguous
    otherwise) and the output in the residual's, which is what lets them flow back through the
    views that made the inputs without a copy."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    inputs, grad_out = make_inputs(2, 20, 24, 48, 40, True, seed=5)
    exact, _ = independent_float64(inputs, grad_out, scale=0.3)
    same_precision = run("reference", inputs, grad_out, torch.float32, device, scale=0.3)
    tensors = [in_layout(t.to(device=device, dtype=torch.float32), layout).requires_grad_() for t in inputs]
    assert layout == "channels_last_features" or not any(t.is_contiguous() for t in tensors)
    out = scft_attention(*tensors, scale=0.3, backend=backend)
    grads = torch.autograd.grad(out, tensors, grad_out.to(device=device, dtype=torch.float32))
    assert_twice_reference_rule((out, *grads), same_precision, exact, backend)
    if backend in ("cpp", "cuda"):
        for name, t, g in zip(("q", "k", "v"), tensors[:3], grads[:3], strict=True):
            expected = t.stride() if layout in DENSE_LAYOUTS else g.new_empty(g.shape).stride()
            assert g.stride() == expected, f"grad_{name} strides {g.stride()}, expected {expected}"
        expected = tensors[3].stride() if layout in DENSE_LAYOUTS else out.new_empty(out.shape).stride()
        assert out.stride() == expected, f"out strides {out.stride()}, expected {expected}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cpp_makes_no_hidden_copy_of_strided_inputs(layout):
    """No clone / contiguous anywhere in the cpp forward + backward (the only copy is the residual
    into the output, which is the residual add)."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable on cpu")
    inputs, grad_out = make_inputs(2, 20, 24, 48, 40, True, seed=6)
    tensors = [in_layout(t.float(), layout).requires_grad_() for t in inputs]
    grad_out = grad_out.float()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.autograd.grad(scft_attention(*tensors, backend="cpp"), tensors, grad_out)
    names = [e.name for e in prof.events()]
    assert "refcolor::scft_attention_backward_kernel" in names  # the profile saw the kernels
    copies = [n for n in names if n in ("aten::clone", "aten::contiguous", "aten::_to_copy")]
    assert not copies, copies


@pytest.mark.parametrize("block_m", [8, 64], ids=["two_pass", "single_pass"])
def test_row_kernels_against_torch(block_m):
    if not usable("triton", "cpu"):
        pytest.skip("triton not usable on cpu")
    from refcolor.kernels.scft_attention import softmax_grad_, softmax_rows_

    g = torch.Generator().manual_seed(7)
    logits = 3 * torch.randn(3, 11, 29, generator=g, dtype=torch.float64)
    grad_probs = torch.randn(3, 11, 29, generator=g, dtype=torch.float64)
    scale = 0.7
    e = torch.exp(scale * logits - (scale * logits).amax(-1, keepdim=True))
    probs = e / e.sum(-1, keepdim=True)
    expected_grad = scale * probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
    assert rel_err(softmax_rows_(logits.clone(), scale, block_m=block_m), probs) <= F64_TOL
    assert rel_err(softmax_grad_(probs, grad_probs.clone(), scale, block_m=block_m), expected_grad) <= F64_TOL


def test_flash_kernel_tiles_and_logsumexp():
    """Tiles smaller than every dimension (masked tails in N, M, d and dv) and the row logsumexp."""
    if not usable("triton", "cpu"):
        pytest.skip("triton not usable on cpu")
    from refcolor.kernels.scft_attention import flash_forward

    (q, k, v, residual), grad_out = make_inputs(2, 37, 29, 40, 24, True, seed=8)
    scale = 40**-0.5
    out, lse = flash_forward(q, k, v, residual, scale, BLOCK_N=16, BLOCK_M=16, BLOCK_D=16, BLOCK_DV=16)
    (expected_out, *_), _ = independent_float64((q, k, v, residual), grad_out, scale)
    logits = torch.einsum("bnd,bmd->bnm", q, k) * scale
    row_max = logits.amax(-1)
    expected_lse = row_max + torch.log(torch.exp(logits - row_max[..., None]).sum(-1))
    assert rel_err(out, expected_out) <= F64_TOL
    assert rel_err(lse, expected_lse) <= F64_TOL


# ----------------------------------------------------------------------------- attention map

# (backend, the op that must appear in the profile when it ran: None for the reference, which
# calls no refcolor op)
MAP_BACKENDS = {
    "reference": None,
    "cpp": "refcolor::scft_attention_forward_kernel",
    "triton": "refcolor::scft_attention",
}


@pytest.mark.parametrize("backend", list(MAP_BACKENDS))
def test_return_attention_comes_from_the_chosen_backend(backend, monkeypatch):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable on cpu")
    monkeypatch.setenv("REFCOLOR_SCFT_IMPL", "flash")  # Triton: the map still comes from its gemm impl
    inputs, grad_out = make_inputs(2, 13, 17, 24, 8, True, seed=9)
    (expected_out, *expected_grads), expected_map = independent_float64(inputs, grad_out)
    tensors = [t.float().requires_grad_() for t in inputs]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out, attention = scft_attention(*tensors, backend=backend, return_attention=True)
    names = {e.name for e in prof.events()}
    if MAP_BACKENDS[backend] is None:
        assert not any(n.startswith("refcolor::") for n in names), names
    else:
        assert MAP_BACKENDS[backend] in names, sorted(n for n in names if "refcolor" in n)
    assert attention.shape == (2, 13, 17) and attention.dtype == torch.float32
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 13))
    assert rel_err(attention, expected_map) <= 1e-6
    assert rel_err(out, expected_out) <= 1e-6
    # out keeps its gradients; the map is the reference's differentiable one, a detached copy elsewhere.
    assert attention.requires_grad == (backend == "reference")
    grads = torch.autograd.grad(out, tensors, grad_out.float())
    for name, g, e in zip(NAMES[1 : 1 + len(grads)], grads, expected_grads, strict=True):
        assert rel_err(g, e) <= 1e-5, name


def test_return_attention_auto_picks_a_backend_with_a_map_and_sdpa_refuses(caplog):
    (q, k, v, residual), _ = make_inputs(1, 6, 5, 16, 4, True, seed=10)
    with pytest.raises(ValueError, match="backend 'sdpa' cannot return the attention map"):
        scft_attention(q, k, v, residual, backend="sdpa", return_attention=True)
    caplog.set_level("DEBUG", logger="refcolor.backends")
    with torch.no_grad():  # the no-grad order starts with sdpa after cpp: skipped for the map
        _, attention = scft_attention(q, k, v, residual, return_attention=True)
    chosen = [r.getMessage() for r in caplog.records if "chose backend" in r.getMessage()]
    expected = "cpp" if usable("cpp", "cpu") else "reference"
    assert f"'{expected}'" in chosen[0], chosen
    assert attention.shape == (1, 6, 5)


def test_default_scale_and_cpu_auto_order(caplog):
    (q, k, v, residual), _ = make_inputs(1, 6, 5, 16, 4, True, seed=10)
    torch.testing.assert_close(scft_attention(q, k, v, residual), scft_attention(q, k, v, residual, scale=0.25))
    # The measured CPU orders (refcolor/ops/scft_attention.py): cpp first, with and without autograd.
    assert PREFERENCE["cpu"] == ("cpp", "reference", "sdpa")
    assert PREFERENCE_NO_GRAD["cpu"] == ("cpp", "sdpa", "reference")
    caplog.set_level("DEBUG", logger="refcolor.backends")
    scft_attention(q.requires_grad_(), k, v, residual)
    with torch.no_grad():
        scft_attention(q, k, v, residual)
    chosen = [r.getMessage() for r in caplog.records if "chose backend" in r.getMessage()]
    if usable("cpp", "cpu"):
        assert "'cpp'" in chosen[0] and "'cpp'" in chosen[1], chosen
    else:  # no compiled extension: the next in each order
        assert "'reference'" in chosen[0] and "'sdpa'" in chosen[1], chosen


def _bad(q, k, v, r, **kwargs):
    return (q, k, v, r), kwargs


@pytest.mark.parametrize(
    "make_args, error, words",
    [
        (lambda q, k, v, r: _bad(q, k[..., :15], v, r), ValueError, ["'k'", "(B, M, d) = (2, M, 16)", "(2, 7, 15)"]),
        (lambda q, k, v, r: _bad(q, k[:1], v, r), ValueError, ["'k'", "(2, M, 16)", "(1, 7, 16)"]),
        (lambda q, k, v, r: _bad(q, k, v[:, :6], r), ValueError, ["'v'", "(2, 7, dv)", "(2, 6, 8)"]),
        (lambda q, k, v, r: _bad(q, k, v, r[..., :7]), ValueError, ["'residual'", "(2, 5, 8)", "(2, 5, 7)"]),
        (lambda q, k, v, r: _bad(q[0], k, v, r), ValueError, ["'q'", "(B, N, d)", "(5, 16)"]),
        (lambda q, k, v, r: _bad(q, k.double(), v, r), TypeError, ["'k'", "float32", "float64"]),
        (lambda q, k, v, r: _bad(q, k, v.to("meta"), r), ValueError, ["'v'", "cpu", "meta"]),
        (lambda q, k, v, r: _bad(q, k, v, r.long()), TypeError, ["'residual'", "floating-point", "int64"]),
        (lambda q, k, v, r: _bad(q[:, :0], k, v, r[:, :0]), ValueError, ["'q'", "empty", "(2, 0, 16)"]),
        (lambda q, k, v, r: _bad(q, k, v, r.numpy()), TypeError, ["'residual'", "ndarray"]),
        (lambda q, k, v, r: _bad(q, k, v, r, scale=float("nan")), ValueError, ["'scale'", "nan"]),
        (lambda q, k, v, r: _bad(q, k, v, r, backend="fast"), ValueError, ["unknown backend 'fast'"]),
    ],
    ids=[
        "d",
        "batch",
        "M",
        "residual",
        "rank",
        "dtype",
        "device",
        "int_residual",
        "empty",
        "not_tensor",
        "scale",
        "backend",
    ],
)
def test_bad_inputs_name_argument_expected_and_actual(make_args, error, words):
    (q, k, v, r), _ = make_inputs(2, 5, 7, 16, 8, True)
    args, kwargs = make_args(q.float(), k.float(), v.float(), r.float())
    with pytest.raises(error) as info:
        scft_attention(*args, **kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_unknown_triton_impl_is_a_clear_error(monkeypatch):
    if not usable("triton", "cpu"):
        pytest.skip("triton not usable on cpu")
    monkeypatch.setenv("REFCOLOR_SCFT_IMPL", "cudnn")
    (q, k, v, r), _ = make_inputs(1, 3, 4, 8, 8, True)
    with pytest.raises(ValueError, match="REFCOLOR_SCFT_IMPL='cudnn'.*'gemm', 'flash'"):
        scft_attention(q, k, v, r, backend="triton")


def op_impls():
    """impl argument of the custom op usable on CPU: Triton's (interpreter) and the C++ kernels."""
    return [pytest.param(impl, id=impl) for impl in (*IMPLS, "cpp")]


def _usable_impl(impl):
    return usable("cpp", "cpu") if impl == "cpp" else usable("triton", "cpu")


@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "no_residual"])
@pytest.mark.parametrize("impl", op_impls())
def test_custom_op_registration_opcheck(impl, with_residual):
    """Schema, fake implementation, autograd registration and AOT dispatch of the custom op; for
    cpp, also on a permuted input (the fake output and gradients keep the inputs' strides)."""
    if not _usable_impl(impl):
        pytest.skip(f"{impl} not usable on cpu")
    (q, k, v, r), _ = make_inputs(2, 9, 7, 16, 8, with_residual, seed=11)
    args = [None if t is None else t.float().requires_grad_() for t in (q, k, v, r)]
    torch.library.opcheck(torch.ops.refcolor.scft_attention.default, (*args, 0.25, impl))
    if impl == "cpp":
        args = [None if t is None else in_layout(t.float(), "permuted").requires_grad_() for t in (q, k, v, r)]
        torch.library.opcheck(torch.ops.refcolor.scft_attention.default, (*args, 0.25, impl))


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_torch_compile_forward_backward(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable on cpu")
    torch._dynamo.reset()

    def loss_fn(q, k, v, r):
        return scft_attention(q, k, v, r, backend=backend).square().sum()

    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    inputs = [t.float().requires_grad_() for t in make_inputs(2, 5, 6, 8, 4, True, seed=12)[0]]
    expected = torch.autograd.grad(loss_fn(*inputs), inputs)
    loss = compiled(*inputs)
    torch.testing.assert_close(loss, loss_fn(*inputs))
    for a, e in zip(torch.autograd.grad(loss, inputs), expected, strict=True):
        torch.testing.assert_close(a, e)


def test_cpp_gradcheck_and_second_backward():
    """float64 gradcheck (finite differences) of the cpp backend; the backward leaves the saved
    probabilities intact, so a retained graph can be differentiated again with the same result."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable on cpu")
    inputs = [t.requires_grad_() for t in make_inputs(2, 5, 7, 3, 4, True, seed=13)[0]]
    assert torch.autograd.gradcheck(lambda *t: scft_attention(*t, backend="cpp"), inputs)
    out = scft_attention(*inputs, backend="cpp")
    first = torch.autograd.grad(out.sum(), inputs, retain_graph=True)
    second = torch.autograd.grad(out.sum(), inputs)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)

"""tps_warp: every backend against the grid_sample reference, gradients, bad inputs, torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refcolor.ops import tps_grid, tps_warp
from tests.helpers import (
    HALF_TOL,
    half_precision_params,
    kernel_backend_params,
    random_tps_points,
    rel_err,
    smooth_image,
    usable,
)

# float64 kernels must match the float64 reference closely. In float32 the kernels and the reference
# evaluate the spline in different orders (the CPU kernel with its own log), and rounding of the
# sample position is amplified by the image's slope, so there the rule is flash-attention's: error
# against the float64 reference at most twice that of the float32 reference (plus an ulp-level floor).
F64_TOL = 1e-10


def assert_close_to_reference(actual, same_precision, exact, name):
    if actual.dtype == torch.float64:
        assert rel_err(actual, exact) <= F64_TOL, f"{name}: relative error {rel_err(actual, exact):.2e}"
    else:
        bound = 2 * rel_err(same_precision, exact) + 4 * torch.finfo(actual.dtype).eps
        assert rel_err(actual, exact) <= bound, f"{name}: {rel_err(actual, exact):.2e} > {bound:.2e}"


CASES = {  # name: (B, C, H, W, K, jitter)
    "rgb_k16": (2, 3, 24, 31, 16, 0.15),
    "gray_k4_tall": (1, 1, 40, 13, 4, 0.2),
    "five_channels_k36": (2, 5, 21, 17, 36, 0.1),
    "far_outside": (1, 3, 19, 23, 9, 0.9),  # content pushed across the border: padding matters
}


def run(backend, image, src, dst, padding, grad_out):
    image = image.detach().requires_grad_()
    out = tps_warp(image, src, dst, padding_mode=padding, backend=backend)
    (grad_image,) = torch.autograd.grad(out, image, grad_out)
    return out, grad_image


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_backend_matches_reference(backend, device, case, padding, dtype):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, C, H, W, K, jitter = CASES[case]
    g = torch.Generator().manual_seed(len(case) * 7 + K)
    src, dst = random_tps_points(B, K, jitter=jitter, generator=g)
    image = smooth_image(B, C, H, W, dtype=dtype, generator=g).to(device)
    grad_out = smooth_image(B, C, H, W, dtype=dtype, generator=g).to(device)
    src, dst = src.to(device), dst.to(device)
    exact = run("reference", image.double(), src, dst, padding, grad_out.double())
    same_precision = run("reference", image, src, dst, padding, grad_out)
    actual = run(backend, image, src, dst, padding, grad_out)
    for name, a, r, e in zip(("output", "grad_image"), actual, same_precision, exact, strict=True):
        assert a.shape == r.shape and a.dtype == r.dtype
        assert_close_to_reference(a, r, e, name)


@pytest.mark.parametrize(
    "backend,device", kernel_backend_params() + [pytest.param("reference", "cpu", id="reference-cpu")]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_identity_warp_returns_the_image(backend, device, dtype):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    _, dst = random_tps_points(2, 9)
    image = torch.rand(2, 3, 17, 22, dtype=dtype, device=device)
    out = tps_warp(image, dst.to(device), dst.to(device), backend=backend)
    # T(q) = q up to rounding of the solve and of the pixel coordinates: a few ulps of the image.
    assert (out - image).abs().max().item() <= 50 * torch.finfo(dtype).eps


def _relayout(kind, t):
    if kind == "contiguous":
        return t.contiguous()
    if kind == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if kind == "permuted":  # (B, H, W, C) storage seen as (B, C, H, W), as from a NHWC decoder
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    if kind == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if kind == "sliced":  # every other column and a row window of a bigger tensor: not dense
        B, C, H, W = t.shape
        big = torch.zeros(B, C + 2, H + 3, 2 * W, dtype=t.dtype, device=t.device)
        big[:, 1:-1, 2:-1, ::2] = t
        return big[:, 1:-1, 2:-1, ::2]
    raise ValueError(kind)


@pytest.mark.parametrize("layout", ["channels_last", "permuted", "sliced", "transposed"])
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_any_layout_forward_backward(backend, device, layout):
    """Channels-last, permuted, sliced and transposed images and gradients: values match the
    float64 reference; the output and the image gradient come back in the image's layout."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    g = torch.Generator().manual_seed(31)
    src, dst = random_tps_points(2, 9, jitter=0.3, generator=g)
    image = _relayout(layout, smooth_image(2, 3, 13, 11, dtype=torch.float64, generator=g).to(device))
    grad_out = _relayout(
        "transposed" if layout != "transposed" else "channels_last",
        smooth_image(2, 3, 13, 11, dtype=torch.float64, generator=g).to(device),
    )
    src, dst = src.to(device), dst.to(device)
    for padding in ("zeros", "border"):
        out, grad_image = run(backend, image, src, dst, padding, grad_out)
        exact = run("reference", image.contiguous(), src, dst, padding, grad_out.contiguous())
        for name, a, e in zip(("output", "grad_image"), (out, grad_image), exact, strict=True):
            assert rel_err(a, e) <= F64_TOL, f"{name}: relative error {rel_err(a, e):.2e}"
        assert out.stride() == torch.empty_like(image).stride()
        assert grad_image.stride() == torch.empty_like(image).stride()
        if layout == "channels_last":
            assert grad_image.is_contiguous(memory_format=torch.channels_last)


def test_no_hidden_copy_of_strided_images():
    """cpp forward and backward on channels-last / sliced images copy no image-sized tensor."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    from refcolor.ops import tps_warp_from_params
    from refcolor.ops.tps import tps_solve

    src, dst = random_tps_points(2, 9, dtype=torch.float32)
    params = tps_solve(src, dst).float()
    for layout in ("channels_last", "sliced"):
        image = _relayout(layout, smooth_image(2, 3, 16, 15)).requires_grad_()
        grad_out = _relayout("transposed", smooth_image(2, 3, 16, 15))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            out = tps_warp_from_params(image, params, dst, backend="cpp")
            torch.autograd.grad(out, image, grad_out)
        copies = [
            (e.name, e.input_shapes)
            for e in prof.events()
            if e.name in ("aten::copy_", "aten::clone", "aten::contiguous")
            and any(list(s) == list(image.shape) for s in e.input_shapes)
        ]
        assert not copies, f"{layout}: {copies}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_cuda_thread_logic_emulated_on_host(padding, layout, dtype):
    """The CUDA kernels' per-thread work (pixel of a thread, tail guard of the last block, spline,
    taps as strided offsets, atomic-add targets) run block by block on the host through the same
    tps_warp_math.h helpers, against the reference. 19 x 23 = 437 pixels: one full 256-thread
    block and a partial one."""
    if not usable("cpp", "cpu"):
        pytest.skip("compiled extension not built")
    from refcolor.ops.tps import tps_solve

    g = torch.Generator().manual_seed(17)
    src, dst = random_tps_points(2, 9, jitter=0.5, generator=g)
    image = _relayout(layout, smooth_image(2, 3, 19, 23, dtype=dtype, generator=g))
    grad_out = _relayout(layout, smooth_image(2, 3, 19, 23, dtype=dtype, generator=g))
    params = tps_solve(src, dst).to(dtype)
    mode = ("zeros", "border").index(padding)
    out, grad_image = torch.ops.refcolor.tps_warp_cuda_emulation(image, params, dst.to(dtype), mode, grad_out)
    exact = run("reference", image.double(), src, dst, padding, grad_out.double())
    same_precision = run("reference", image, src, dst, padding, grad_out)
    for name, a, r, e in zip(("output", "grad_image"), (out, grad_image), same_precision, exact, strict=True):
        assert_close_to_reference(a, r, e, name)


def test_sampling_grid_contract():
    """tps_warp == grid_sample on tps_grid (the dense correspondence)."""
    src, dst = random_tps_points(2, 12)
    image = smooth_image(2, 3, 30, 26, dtype=torch.float64)
    grid = tps_grid(src, dst, (30, 26))
    for padding in ("zeros", "border"):
        expected = F.grid_sample(image, grid, padding_mode=padding, align_corners=True)
        assert rel_err(tps_warp(image, src, dst, padding_mode=padding), expected) <= F64_TOL


def test_moves_content_from_src_to_dst():
    """A bright pixel at src lands at dst."""
    H = W = 41
    image = torch.zeros(1, 1, H, W)
    image[0, 0, 20, 10] = 1.0  # x = -0.5, y = 0
    src = torch.tensor([[[-0.5, 0.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]])
    dst = torch.tensor([[[0.5, 0.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]])
    out = tps_warp(image, src, dst)
    assert out[0, 0].flatten().argmax().item() == 20 * W + 30  # x = 0.5, y = 0


@pytest.mark.usefixtures("one_thread")  # tiny calls: a 2-thread barrier costs more than the work
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64_image_and_points(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    src, dst = random_tps_points(1, 5, generator=torch.Generator().manual_seed(11))
    image = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    src.requires_grad_()
    dst.requires_grad_()
    for padding in ("zeros", "border"):
        assert torch.autograd.gradcheck(
            lambda i, s, d, padding=padding: tps_warp(i, s, d, padding_mode=padding, backend=backend), (image, src, dst)
        )


def test_point_gradients_of_kernel_path_match_reference():
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    grads = {}
    for backend in ("reference", "cpp"):
        src, dst = random_tps_points(2, 9, dtype=torch.float32, generator=torch.Generator().manual_seed(5))
        src.requires_grad_()
        dst.requires_grad_()
        out = tps_warp(smooth_image(2, 3, 20, 24), src, dst, padding_mode="border", backend=backend)
        grads[backend] = torch.autograd.grad(out.square().sum(), (src, dst))
    for a, e in zip(grads["cpp"], grads["reference"], strict=True):
        assert rel_err(a, e) <= 1e-3


@pytest.mark.parametrize(
    "make_args, error, words",
    [
        (lambda i, s, d: (i[0], s, d), ValueError, ["'image'", "(B, C, H, W)", "(3, 8, 9)"]),
        (lambda i, s, d: (i, s[:1], d[:1]), ValueError, ["'image'", "batch size", "(1, 6, 2)"]),
        (lambda i, s, d: (i, s[:, :2], d[:, :2]), ValueError, ["K >= 3", "K = 2"]),
        (lambda i, s, d: (i, s, d[:, :5]), ValueError, ["same shape", "(2, 6, 2)", "(2, 5, 2)"]),
        (lambda i, s, d: (i.long(), s, d), TypeError, ["'image'", "floating-point", "int64"]),
        (lambda i, s, d: (i, s.nan_to_num(0) / 0, d), ValueError, ["'src_points'", "NaN"]),
        (lambda i, s, d: (i.to("meta"), s, d), ValueError, ["'image'", "cpu", "meta"]),
    ],
    ids=["rank", "batch", "few_points", "point_shapes", "int_image", "nan", "device"],
)
def test_bad_inputs(make_args, error, words):
    src, dst = random_tps_points(2, 6, dtype=torch.float32)
    image = torch.rand(2, 3, 8, 9)
    with pytest.raises(error) as info:
        tps_warp(*make_args(image, src, dst))
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_bad_padding_and_backend():
    src, dst = random_tps_points(1, 4, dtype=torch.float32)
    image = torch.rand(1, 3, 5, 5)
    with pytest.raises(ValueError, match="'padding_mode'.*'reflection'"):
        tps_warp(image, src, dst, padding_mode="reflection")
    with pytest.raises(ValueError, match="'cuda'.*CUDA tensors"):
        tps_warp(image, src, dst, backend="cuda")


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_custom_op_registration_opcheck(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    from refcolor.ops.tps import tps_solve

    src, dst = random_tps_points(2, 5, dtype=torch.float32)
    params = tps_solve(src, dst).float().requires_grad_()
    image = smooth_image(2, 3, 6, 7).requires_grad_()
    torch.library.opcheck(torch.ops.refcolor.tps_warp.default, (image, params, dst.requires_grad_(), 1, backend))


def test_torch_compile_forward_backward():
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    torch._dynamo.reset()
    from refcolor.ops import tps_warp_from_params
    from refcolor.ops.tps import tps_solve

    src, dst = random_tps_points(2, 6, dtype=torch.float32)
    params = tps_solve(src, dst).float()

    def loss_fn(image):
        return tps_warp_from_params(image, params, dst, padding_mode="border", backend="cpp").square().sum()

    image = smooth_image(2, 3, 9, 8).requires_grad_()
    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    loss = compiled(image)
    torch.testing.assert_close(loss, loss_fn(image))
    torch.testing.assert_close(torch.autograd.grad(loss, image)[0], torch.autograd.grad(loss_fn(image), image)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("backend,device", half_precision_params())
def test_half_precision_within_twice_reference_error(backend, device, dtype):
    """Output and image gradient: error vs float64 at most ~2x that of the same-precision
    reference (plus an ulp), and within the dtype's tolerance."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, C, H, W = (4, 3, 64, 48) if device == "cuda" else (2, 3, 21, 17)
    src, dst = random_tps_points(B, 16)
    src, dst = src.to(device), dst.to(device)
    image64 = smooth_image(B, C, H, W, dtype=torch.float64).to(device)
    grad64 = smooth_image(B, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).to(device)
    exact = run("reference", image64, src, dst, "zeros", grad64)
    same_precision = run("reference", image64.to(dtype), src, dst, "zeros", grad64.to(dtype))
    kernel = run(backend, image64.to(dtype), src, dst, "zeros", grad64.to(dtype))
    eps = torch.finfo(dtype).eps
    for name, k, r, e in zip(("output", "grad_image"), kernel, same_precision, exact, strict=True):
        assert k.dtype == dtype
        err = rel_err(k, e)
        assert err <= 2 * rel_err(r, e) + eps, f"{name}: {err:.2e} vs reference {rel_err(r, e):.2e}"
        assert err <= HALF_TOL[dtype], f"{name}: {err:.2e} > {HALF_TOL[dtype]:.1e}"

"""region_mean: every backend against the scatter_reduce reference, gradients, gradcheck, layouts,
empty and zero-weight regions, determinism, bad inputs and torch.compile."""

from __future__ import annotations

import warnings
import zlib

import pytest
import torch

import refcolor
from refcolor.ops import region_mean
from refcolor.ops.region_mean import DTYPES, _check_deterministic
from tests.helpers import HALF_TOL, half_precision_params, kernel_backend_params, make_image, rel_err, usable

# Relative error bound (max abs error / max abs value) against the same-dtype reference: the
# kernels add in another order than scatter_reduce (per-tile sums, atomics), a few ulps apart.
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}
NAMES = ("painted", "means", "grad_image", "grad_weight")


def implemented_backends(device):
    """Usable backends that this op implements (available_backends lists every op's)."""
    return [b for b in refcolor.available_backends(device) if b in DTYPES]


def blocky_labels(B, H, W, regions, generator, cell=5):
    """Piecewise-constant labels (cells of `cell` x `cell` pixels, random region each), the shape
    of a real region map: runs of equal labels along rows, and labels regions-1, regions-2 unused."""
    coarse = torch.randint(0, max(1, regions - 2), (B, 1, -(-H // cell), -(-W // cell)), generator=generator)
    fine = coarse.repeat_interleave(cell, 2).repeat_interleave(cell, 3)
    return fine[:, 0, :H, :W].contiguous()


def make_case(B, C, H, W, regions, *, weighted, blocky, dtype, device="cpu", seed="case"):
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))  # stable across runs
    if blocky:
        labels = blocky_labels(B, H, W, regions, g)
    else:
        labels = torch.randint(0, max(1, regions - 2), (B, H, W), generator=g)
    image = make_image(B, C, H, W, dtype=torch.float64, generator=g)
    weight = None
    if weighted:
        weight = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) + 0.1
        weight[(labels == 0)[:, None]] = 0  # region 0: pixels present, weights 0 -> mean 0
    grad_painted = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    grad_means = torch.randn(B, regions, C, generator=g, dtype=torch.float64)

    def to(t):
        return None if t is None else t.to(device=device, dtype=dtype)

    return to(image), labels.to(device), regions, to(weight), to(grad_painted), to(grad_means)


def run(backend, image, labels, regions, weight, grad_painted, grad_means):
    """Forward and backward through `backend`; returns painted, means, grad_image, grad_weight."""
    image = image.detach().requires_grad_()
    inputs = [image]
    if weight is not None:
        weight = weight.detach().requires_grad_()
        inputs.append(weight)
    painted, means = region_mean(image, labels, regions, weight, backend=backend)
    grads = torch.autograd.grad([painted, means], inputs, [grad_painted, grad_means])
    return painted, means, grads[0], grads[1] if weight is not None else None


def assert_matches(actual, expected, tol):
    for name, a, e in zip(NAMES, actual, expected, strict=True):
        if e is None:
            assert a is None, name
            continue
        assert a.shape == e.shape and a.dtype == e.dtype, name
        assert rel_err(a, e) <= tol, f"{name}: relative error {rel_err(a, e):.2e}"


CASES = {  # name: (B, C, H, W, regions, weighted, blocky)
    "odd_hw_weighted": (2, 3, 9, 13, 7, True, False),
    "unweighted": (2, 3, 11, 6, 5, False, False),
    "one_channel_blocky": (2, 1, 17, 23, 9, True, True),
    "five_channels": (1, 5, 12, 10, 6, True, False),
    "blocky_many_tiles": (1, 3, 150, 130, 40, True, True),  # 19,500 pixels: two CPU tiles
    "num_regions_larger_than_used": (2, 3, 8, 8, 30, True, False),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_backend_matches_reference(backend, device, case, dtype):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, C, H, W, R, weighted, blocky = CASES[case]
    args = make_case(B, C, H, W, R, weighted=weighted, blocky=blocky, dtype=dtype, device=device, seed=case)
    assert_matches(run(backend, *args), run("reference", *args), TOL[dtype])


@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_many_regions_random_map(backend, device):
    """500 regions on a 256 x 256 random label map (no runs: every pixel its own add), weighted."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    g = torch.Generator().manual_seed(500)
    labels = torch.randint(0, 500, (1, 256, 256), generator=g).to(device)
    image = make_image(1, 3, 256, 256, generator=g).to(device)
    weight = torch.rand(1, 1, 256, 256, generator=g).to(device)
    gP, gM = torch.randn(1, 3, 256, 256, generator=g).to(device), torch.randn(1, 500, 3, generator=g).to(device)
    args = (image, labels, 500, weight, gP, gM)
    assert_matches(run(backend, *args), run("reference", *args), TOL[torch.float32])


def _layout(kind, t):
    """`t` (B, Ch, H, W) re-laid out without changing its values."""
    if kind == "contiguous":
        return t.contiguous()
    if kind == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if kind == "transposed":  # (B, Ch, W, H) storage: unit stride along H
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if kind == "sliced":  # every other column of a wider tensor, rows of a taller one: not collapsible
        B, Ch, H, W = t.shape
        big = torch.zeros(B, Ch + 1, H + 2, 2 * W + 1, dtype=t.dtype, device=t.device)
        big[:, 1:, 1:-1, 1::2] = t
        return big[:, 1:, 1:-1, 1::2]
    raise ValueError(kind)


LAYOUTS = {  # (image, labels, weight, grad_painted)
    "all_channels_last": ("channels_last", "contiguous", "channels_last", "channels_last"),
    "sliced": ("sliced", "sliced", "sliced", "sliced"),
    "transposed_mixed": ("transposed", "transposed", "contiguous", "channels_last"),
    "cl_image_sliced_labels": ("channels_last", "sliced", "transposed", "contiguous"),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_any_layout_forward_backward(backend, device, layout, dtype):
    """Channels-last, sliced, transposed and mixed layouts: values match the reference, and painted
    and the image gradient come back in the image's layout (channels-last in, channels-last out)."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    image, labels, R, weight, gP, gM = make_case(
        2, 3, 9, 10, 8, weighted=True, blocky=True, dtype=dtype, device=device, seed=layout
    )
    ki, kl, kw, kg = LAYOUTS[layout]
    laid = (_layout(ki, image), _layout(kl, labels[:, None])[:, 0], R, _layout(kw, weight), _layout(kg, gP), gM)
    actual = run(backend, *laid)
    expected = run("reference", image, labels, R, weight, gP, gM)
    assert_matches(actual, expected, TOL[dtype])
    painted, _, grad_image, grad_weight = actual
    assert painted.stride() == torch.empty_like(laid[0]).stride()
    assert grad_image.stride() == torch.empty_like(laid[0]).stride()
    assert grad_weight.stride() == torch.empty_like(laid[3]).stride()


def test_no_hidden_copy_of_strided_inputs():
    """Forward and backward of the C++ kernels on channels-last / sliced float32 inputs run no copy
    of any tensor (Triton on the CPU cannot be checked this way: its interpreter copies arguments).
    The labels stay contiguous: the range check's torch.aminmax copies any other label layout."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    for layout in ("all_channels_last", "sliced"):
        image, labels, R, weight, gP, _ = make_case(2, 3, 9, 10, 8, weighted=True, blocky=True, dtype=torch.float32)
        ki, _, kw, kg = LAYOUTS[layout]
        image, weight = _layout(ki, image).requires_grad_(), _layout(kw, weight).requires_grad_()
        gP = _layout(kg, gP)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            painted, _ = region_mean(image, labels, R, weight, backend="cpp")
            torch.autograd.grad(painted, [image, weight], gP)
        copies = {e.name for e in prof.events()} & {"aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy"}
        assert not copies, f"{layout}: {sorted(copies)}"


def test_reference_semantics_by_hand():
    """Weighted means, a zero-weight region (mean 0, still painted) and an empty one, by hand."""
    image = torch.tensor([[[[0.2, 0.4, 0.9, 0.7, 0.5]]]])
    labels = torch.tensor([[[0, 0, 1, 2, 2]]])
    weight = torch.tensor([[[[1.0, 3.0, 2.0, 0.0, 0.0]]]])
    for backend in implemented_backends("cpu"):
        painted, means = region_mean(image, labels, 4, weight, backend=backend)
        torch.testing.assert_close(painted, torch.tensor([[[[0.35, 0.35, 0.9, 0.0, 0.0]]]]))
        torch.testing.assert_close(means, torch.tensor([[[0.35], [0.9], [0.0], [0.0]]]))
        painted, means = region_mean(image, labels, backend=backend)  # num_regions from the labels: 3
        torch.testing.assert_close(means, torch.tensor([[[0.3], [0.9], [0.6]]]))


@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_zero_weight_and_empty_regions_pass_finite_zero_gradients(backend, device):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    image = torch.rand(1, 3, 4, 4, device=device, requires_grad=True)
    labels = torch.zeros(1, 4, 4, dtype=torch.int64, device=device)
    labels[:, 2:] = 1  # region 1: weights 0; regions 2, 3: no pixels
    weight = torch.ones(1, 1, 4, 4, device=device)
    weight[:, :, 2:] = 0
    weight.requires_grad_()
    painted, means = region_mean(image, labels, 4, weight, backend=backend)
    assert torch.all(painted[:, :, 2:] == 0) and torch.all(means[:, 1:] == 0)
    grad_image, grad_weight = torch.autograd.grad((painted.sum() + means.sum()), [image, weight])
    assert torch.isfinite(grad_image).all() and torch.isfinite(grad_weight).all()
    assert torch.all(grad_image[:, :, 2:] == 0) and torch.all(grad_weight[:, :, 2:] == 0)
    # Region 0: 8 pixels painted with the mean plus the mean itself: d/dY = (8 + 1) / 8 per pixel.
    torch.testing.assert_close(grad_image[:, :, :2], torch.full_like(grad_image[:, :, :2], 9 / 8))


@pytest.mark.usefixtures("one_thread")  # tiny calls: a 2-thread barrier costs more than the work
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
# Triton is left out: the interpreter takes minutes for gradcheck's hundreds of calls; its
# gradients are checked against the reference's above.
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend, weighted):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    image, labels, R, weight, _, _ = make_case(
        2, 3, 3, 5, 5, weighted=weighted, blocky=False, dtype=torch.float64, seed="gradcheck"
    )
    image.requires_grad_()
    if weight is None:
        assert torch.autograd.gradcheck(lambda y: region_mean(y, labels, R, backend=backend), (image,))
        return
    weight = weight.clamp_min(0.2)  # totals well above 0: finite differences never cross the step
    weight.requires_grad_()
    assert torch.autograd.gradcheck(lambda y, w: region_mean(y, labels, R, w, backend=backend), (image, weight))


def test_cpp_is_deterministic_across_thread_counts():
    """Fixed tiles summed in a fixed order: bitwise the same results on 1 and 2 threads."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    args = make_case(2, 3, 200, 180, 300, weighted=True, blocky=True, dtype=torch.float32, seed="threads")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run("cpp", *args)
        torch.set_num_threads(2)
        two = run("cpp", *args)
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(NAMES, one, two, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize(
    "shape,layout",
    [((2, 3, 37, 61, 12), "contiguous"), ((1, 5, 45, 50, 1500), "sliced"), ((2, 3, 40, 41, 9), "channels_last")],
    ids=["partial_blocks", "global_table_sliced", "channels_last"],
)
def test_cuda_block_logic_emulated_on_host(shape, layout, weighted, dtype):
    """The CUDA kernels' index arithmetic (pixel blocks and their tails, runs of equal labels across
    thread boundaries, shared or global tables, strided offsets), run grid block by grid block on
    the host through the same region_mean_math.h helpers, against the reference. 37 * 61 = 2,257
    pixels: one full 2,048-pixel reduction block plus a tail; 1,500 regions x 6 sums (36 kB in
    float32) do not fit the 32 kB shared-memory table: the global path."""
    if not usable("cpp", "cpu"):
        pytest.skip("compiled extension not built")
    B, C, H, W, R = shape
    image, labels, R, weight, gP, gM = make_case(
        B, C, H, W, R, weighted=weighted, blocky=True, dtype=dtype, seed=f"emulation-{layout}"
    )
    if layout != "contiguous":
        image, gP = _layout(layout, image), _layout(layout, gP)
        labels = _layout("sliced" if layout == "sliced" else "contiguous", labels[:, None])[:, 0]
    actual = torch.ops.refcolor.region_mean_cuda_emulation(image, labels, weight, R, gP, gM)
    expected = run("reference", image, labels, R, weight, gP, gM)
    actual = (*actual[:3], actual[3] if weighted else None)
    assert_matches(actual, expected, TOL[dtype])


@pytest.mark.parametrize(
    "make_args, error, words",
    [
        (lambda y, L, w: (y[0], L, 4, None), ValueError, ["'image'", "(B, C, H, W)", "(3, 5, 6)"]),
        (lambda y, L, w: (y, L.int(), 4, None), TypeError, ["'labels'", "int64", "int32"]),
        (lambda y, L, w: (y, L[:, :4], 4, None), ValueError, ["'labels'", "(2, 5, 6)", "(2, 4, 6)"]),
        (lambda y, L, w: (y, L, 3, None), ValueError, ["'labels'", "[0, 2]", "[0, 3]"]),
        (lambda y, L, w: (y, L - 1, 4, None), ValueError, ["'labels'", "[0, 3]", "[-1, 2]"]),
        (lambda y, L, w: (y, L, 0, None), ValueError, ["'num_regions'", ">= 1", "0"]),
        (lambda y, L, w: (y, L, 2.0, None), ValueError, ["'num_regions'", "int", "2.0"]),
        (lambda y, L, w: (y, L, 4, w[:, :, :4]), ValueError, ["'weight'", "(2, 1, 5, 6)", "(2, 1, 4, 6)"]),
        (lambda y, L, w: (y, L, 4, w.double()), TypeError, ["'weight'", "float32", "float64"]),
        (lambda y, L, w: (y, L.to("meta"), 4, None), ValueError, ["'labels'", "cpu", "meta"]),
        (lambda y, L, w: ((y * 255).long(), L, 4, None), TypeError, ["'image'", "floating-point", "int64"]),
        (lambda y, L, w: (y, L.numpy(), 4, None), TypeError, ["'labels'", "ndarray"]),
    ],
    ids=[
        "rank",
        "labels_dtype",
        "labels_shape",
        "label_too_big",
        "label_negative",
        "zero_regions",
        "float_regions",
        "weight_shape",
        "weight_dtype",
        "mixed_device",
        "int_image",
        "not_tensor",
    ],
)
def test_bad_inputs_name_argument_expected_and_actual(make_args, error, words):
    g = torch.Generator().manual_seed(9)
    image = make_image(2, 3, 5, 6, generator=g)
    labels = torch.randint(0, 3, (2, 5, 6), generator=g)
    labels[0, 0, 0] = 3
    weight = torch.rand(2, 1, 5, 6, generator=g)
    with pytest.raises(error) as info:
        region_mean(*make_args(image, labels, weight))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_kernel_rejects_out_of_range_labels():
    """The checks in refcolor.ops are skipped under torch.compile: the C++ kernel still refuses
    labels outside [0, R) with a one-line error, and never writes outside its tables."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    image = torch.rand(1, 3, 4, 4)
    for bad in (-1, 5):
        labels = torch.zeros(1, 4, 4, dtype=torch.int64)
        labels[0, 2, 1] = bad
        with pytest.raises(RuntimeError, match=r"'labels' must be in \[0, 4\]"):
            torch.ops.refcolor.region_mean_forward_kernel(image, labels, None, 5)
        with pytest.raises(RuntimeError, match=r"'labels' must be in \[0, 4\]"):
            torch.ops.refcolor.region_mean_forward_kernel(image, labels.transpose(1, 2), None, 5)


def test_unusable_backend_is_a_clear_error():
    image, labels = make_image(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="'cuda'.*CUDA tensors"):
        region_mean(image, labels, 1, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        region_mean(image, labels, 1, backend="fast")
    if usable("cpp", "cpu"):
        with pytest.raises(ValueError, match="'cpp'.*float16"):
            region_mean(image.half(), labels, 1, backend="cpp")


def test_atomic_backends_follow_torch_deterministic_mode():
    """On CUDA, "cuda" and "triton" add with float atomics: under use_deterministic_algorithms they
    raise (warn with warn_only=True), as torch's nondeterministic ops do; the CPU kernels do not."""
    cuda = torch.device("cuda")
    mode, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        torch.use_deterministic_algorithms(True)
        for backend in ("cuda", "triton"):
            with pytest.raises(RuntimeError, match=f"backend '{backend}'.*not deterministic"):
                _check_deterministic(backend, cuda)
        _check_deterministic("cpp", torch.device("cpu"))
        _check_deterministic("triton", torch.device("cpu"))  # the interpreter adds in order
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="not deterministic"):
            _check_deterministic("cuda", cuda)
        torch.use_deterministic_algorithms(False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _check_deterministic("cuda", cuda)
    finally:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_deterministic_mode_auto_takes_reference_on_cuda():
    image, labels, R, weight, gP, gM = make_case(2, 3, 33, 40, 20, weighted=True, blocky=True, dtype=torch.float32)
    image, labels, weight = image.cuda(), labels.cuda(), weight.cuda()
    mode = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        painted, _ = region_mean(image, labels, R, weight)
        torch.testing.assert_close(painted, region_mean(image, labels, R, weight, backend="reference")[0])
        if usable("cuda", "cuda"):
            with pytest.raises(RuntimeError, match="deterministic"):
                region_mean(image, labels, R, weight, backend="cuda")
    finally:
        torch.use_deterministic_algorithms(mode)


@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_custom_op_registration_opcheck(backend, weighted):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the custom op."""
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    image, labels, R, weight, _, _ = make_case(
        2, 3, 5, 6, 6, weighted=weighted, blocky=False, dtype=torch.float32, seed="opcheck"
    )
    image.requires_grad_()
    if weight is not None:
        weight.requires_grad_()
    torch.library.opcheck(torch.ops.refcolor.region_mean.default, (image, labels, weight, R, backend))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_torch_compile_forward_backward(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    torch._dynamo.reset()

    def loss_fn(y, labels, w):
        painted, means = region_mean(y, labels, 7, w, backend=backend)
        return (painted * painted).sum() + means.sum()

    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    image, labels, _, weight, _, _ = make_case(2, 3, 6, 7, 7, weighted=True, blocky=False, dtype=torch.float32)
    image.requires_grad_()
    weight.requires_grad_()
    expected = torch.autograd.grad(loss_fn(image, labels, weight), [image, weight])
    loss = compiled(image, labels, weight)
    torch.testing.assert_close(loss, loss_fn(image, labels, weight))
    for a, e in zip(torch.autograd.grad(loss, [image, weight]), expected, strict=True):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("backend,device", half_precision_params())
def test_half_precision_within_twice_reference_error(backend, device, dtype):
    """flash-attention's rule: forward and both gradients, error vs float64 at most ~2x that of
    the same-precision reference (float32 sums, as the kernels), and within the dtype's tolerance."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, C, H, W, R = (4, 3, 96, 80, 60) if device == "cuda" else (2, 3, 40, 36, 25)
    args64 = make_case(B, C, H, W, R, weighted=True, blocky=True, dtype=torch.float64, device=device, seed="half")
    image, labels, R, weight, gP, gM = args64
    # Inputs rounded to the dtype once, so all three runs see the same values.
    image, weight, gP, gM = (t.to(dtype).double() for t in (image, weight, gP, gM))
    exact = run("reference", image, labels, R, weight, gP, gM)
    low = [image.to(dtype), labels, R, weight.to(dtype), gP.to(dtype), gM.to(dtype)]
    same_precision = run("reference", *low)
    kernel = run(backend, *low)
    eps = torch.finfo(dtype).eps
    for name, k, r, e in zip(NAMES, kernel, same_precision, exact, strict=True):
        assert k.dtype == dtype
        err = rel_err(k, e)
        assert err <= 2 * rel_err(r, e) + eps, f"{name}: {err:.2e} vs reference {rel_err(r, e):.2e}"
        assert err <= HALF_TOL[dtype], f"{name}: {err:.2e} > {HALF_TOL[dtype]:.1e}"

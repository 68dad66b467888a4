"""segment_hint_colors: every backend against the pure-PyTorch reference, gradients, gradcheck,
bad inputs and torch.compile."""

from __future__ import annotations

import zlib

import pytest
import torch

import refcolor
from refcolor.ops import segment_hint_colors
from refcolor.ops.segment_hint_colors import DTYPES
from tests.helpers import (
    HALF_TOL,
    half_precision_params,
    kernel_backend_params,
    make_image,
    make_segments,
    rel_err,
    usable,
)

# Relative error bound (max abs error / max abs value) against the same-dtype reference.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}

CASES = {  # name: (B, Nc, C, H, W, num_hints)
    "odd_hw_per_sample_nh": (2, 6, 3, 9, 13, [2, 6]),
    "b1_nh0": (1, 5, 3, 8, 8, 0),
    "nh_equals_nc": (3, 4, 3, 7, 5, 4),
    "one_channel": (2, 7, 1, 6, 11, [7, 3]),
    "five_channels_many_chunks": (2, 5, 5, 40, 41, [3, 5]),
    "many_pixel_blocks": (1, 3, 3, 72, 72, 3),
}


def implemented_backends(device):
    """Usable backends that this op implements (available_backends lists every op's)."""
    return [b for b in refcolor.available_backends(device) if b in DTYPES]


def run(backend, segments, image, num_hints, grad_hints, grad_mask):
    """Forward and backward through `backend`; returns hints, mask, dS, dY."""
    segments = segments.detach().requires_grad_()
    image = image.detach().requires_grad_()
    hints, mask = segment_hint_colors(segments, image, num_hints, backend=backend)
    d_segments, d_image = torch.autograd.grad([hints, mask], [segments, image], [grad_hints, grad_mask])
    return hints, mask, d_segments, d_image


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["onehot", "soft"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_backend_matches_reference(backend, device, case, kind, dtype):
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, Nc, C, H, W, nh = CASES[case]
    g = torch.Generator().manual_seed(zlib.crc32(f"{case}-{kind}".encode()))  # stable across runs
    S = make_segments(B, Nc, H, W, kind, dtype=dtype, device=device, generator=g)
    Y = make_image(B, C, H, W, dtype=dtype, device=device, generator=g)
    gH = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    gM = torch.randn(B, 1, H, W, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    expected = run("reference", S, Y, nh, gH, gM)
    actual = run(backend, S, Y, nh, gH, gM)
    for name, a, e in zip(("hints", "mask", "grad_segments", "grad_image"), actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        assert rel_err(a, e) <= TOL[dtype], f"{name}: relative error {rel_err(a, e):.2e}"


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
    if kind == "cropped":  # a window of a bigger contiguous tensor: unit column stride, rows W + 3 apart
        B, Ch, H, W = t.shape
        big = torch.zeros(B, Ch, H + 2, W + 3, dtype=t.dtype, device=t.device)
        big[:, :, 1:-1, 2:-1] = t
        return big[:, :, 1:-1, 2:-1]
    raise ValueError(kind)


# (segments, image, grad_hints) layouts; "one_hot" is one_hot(labels, Nc).permute(0, 3, 1, 2).
LAYOUTS = {
    "one_hot_permuted": ("one_hot", "contiguous", "contiguous"),
    "all_channels_last": ("channels_last", "channels_last", "channels_last"),
    "sliced": ("sliced", "sliced", "sliced"),
    "cropped": ("cropped", "cropped", "cropped"),  # segment-major loops, one image row at a time
    "transposed_mixed": ("transposed", "channels_last", "transposed"),
    "contiguous_segments_cl_image": ("contiguous", "channels_last", "sliced"),
}


def _layout_inputs(layout, dtype, device, B=2, Nc=11, C=3, H=9, W=10):
    g = torch.Generator().manual_seed(zlib.crc32(layout.encode()))
    s_kind, y_kind, g_kind = LAYOUTS[layout]
    if s_kind == "one_hot":
        labels = torch.randint(0, Nc - 1, (B, H, W), generator=g)
        S = torch.nn.functional.one_hot(labels, Nc).to(device=device, dtype=dtype).permute(0, 3, 1, 2)
        assert S.is_contiguous(memory_format=torch.channels_last)
    else:
        S = _layout(s_kind, make_segments(B, Nc, H, W, "soft", dtype=dtype, device=device, generator=g))
    Y = _layout(y_kind, make_image(B, C, H, W, dtype=dtype, device=device, generator=g))
    gH = _layout(g_kind, torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(dtype=dtype, device=device))
    gM = torch.randn(B, 1, H, W, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return S, Y, gH, gM


@pytest.mark.parametrize(
    "dtype,channels",
    [(torch.float64, 3), (torch.float32, 3), (torch.float64, 5)],
    ids=["f64-rgb", "f32-rgb", "f64-5ch"],
)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("backend,device", kernel_backend_params())
def test_any_layout_forward_backward(backend, device, layout, dtype, channels):
    """Permuted, channels-last, sliced and mixed layouts: values match the reference, and outputs
    and gradients come back in their input's layout (channels-last in, channels-last out). 11
    segments with 7 or 11 active: a full group of 8 and a partial one in the pixel-major loops."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    S, Y, gH, gM = _layout_inputs(layout, dtype, device, C=channels)
    nh = [0, 11] if layout == "transposed_mixed" else [7, 11]  # Nh = 0: every segment gets zero gradient
    actual = run(backend, S, Y, nh, gH, gM)
    expected = run("reference", S.contiguous(), Y.contiguous(), nh, gH.contiguous(), gM)
    for name, a, e in zip(("hints", "mask", "grad_segments", "grad_image"), actual, expected, strict=True):
        assert rel_err(a, e) <= TOL[dtype], f"{name}: relative error {rel_err(a, e):.2e}"
    hints, _, dS, dY = actual
    assert hints.stride() == torch.empty_like(Y).stride()
    assert dS.stride() == torch.empty_like(S).stride() and dY.stride() == torch.empty_like(Y).stride()
    if LAYOUTS[layout][0] in ("one_hot", "channels_last"):
        assert dS.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("num_segments,num_hints", [(3, 3), (5, 4), (10, 10)])
def test_channels_last_few_segments_on_two_threads(num_segments, num_hints):
    """The pixel-major C++ path loads and stores whole vectors of 8 segments where the tensor's
    packing allows it; with fewer segments than that, such a vector covers several pixels. Two
    threads and 64 tiles of 1,024 pixels: a store past the span would land in the other thread's
    pixels (or past the tensor)."""
    if not usable("cpp", "cpu"):
        pytest.skip("cpp not usable")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(num_segments)
        labels = torch.randint(0, num_segments, (1, 256, 256), generator=g)
        S = torch.nn.functional.one_hot(labels, num_segments).double().permute(0, 3, 1, 2)
        Y = make_image(1, 3, 256, 256, dtype=torch.float64, generator=g)
        gH, gM = torch.randn(1, 3, 256, 256, generator=g, dtype=torch.float64), torch.ones(1, 1, 256, 256).double()
        actual = run("cpp", S, Y, [num_hints], gH, gM)
        expected = run("reference", S.contiguous(), Y, [num_hints], gH, gM)
    finally:
        torch.set_num_threads(threads)
    for name, a, e in zip(("hints", "mask", "grad_segments", "grad_image"), actual, expected, strict=True):
        assert rel_err(a, e) <= TOL[torch.float64], f"{name}: relative error {rel_err(a, e):.2e}"


@pytest.mark.parametrize("backend", ["cpp"])
def test_no_hidden_copy_of_strided_inputs(backend):
    """Forward and backward on channels-last / sliced inputs run no copy or clone of any tensor.
    (Triton on the CPU cannot be checked this way: its interpreter copies every argument.)"""
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    for layout in ("one_hot_permuted", "sliced"):
        S, Y, gH, gM = _layout_inputs(layout, torch.float32, "cpu")
        S.requires_grad_()
        Y.requires_grad_()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            hints, mask = segment_hint_colors(S, Y, [4, 11], backend=backend)
            torch.autograd.grad([hints, mask], [S, Y], [gH, gM])
        names = {e.name for e in prof.events()}
        copies = names & {"aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy"}
        assert not copies, f"{layout}: {sorted(copies)}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["contiguous", "one_hot_permuted", "sliced", "transposed_mixed"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 37, 29), (3, 4, 5, 40, 41), (1, 3, 1, 1, 1)], ids=str)
def test_cuda_block_logic_emulated_on_host(shape, layout, dtype):
    """The CUDA kernels' index arithmetic (pixel blocks and their tails, channel groups, workspace
    slots, strided offsets), run grid block by grid block on the host through the same
    segment_hint_colors_math.h helpers, against the reference. The shapes leave partial blocks:
    37 * 29 = 1073 pixels is one full 1024-pixel reduction block plus a tail of 49."""
    if not usable("cpp", "cpu"):
        pytest.skip("compiled extension not built")
    B, Nc, C, H, W = shape
    if layout == "contiguous":
        g = torch.Generator().manual_seed(7)
        S = make_segments(B, Nc, H, W, "soft", dtype=dtype, generator=g)
        Y = make_image(B, C, H, W, dtype=dtype, generator=g)
        gH, gM = torch.randn(B, C, H, W, dtype=dtype, generator=g), torch.randn(B, 1, H, W, dtype=dtype, generator=g)
    else:
        S, Y, gH, gM = _layout_inputs(layout, dtype, "cpu", B=B, Nc=Nc, C=C, H=H, W=W)
    nh = torch.tensor([Nc, 1, Nc - 1][:B])
    actual = torch.ops.refcolor.segment_hint_colors_cuda_emulation(S, Y, nh, gH, gM)
    expected = run("reference", S, Y, nh, gH, gM)
    for name, a, e in zip(("hints", "mask", "grad_segments", "grad_image"), actual, expected, strict=True):
        assert rel_err(a, e) <= TOL[dtype], f"{name}: relative error {rel_err(a, e):.2e}"


def test_reference_semantics_by_hand():
    """Eq. 4-8 on a case small enough to compute by hand."""
    S = torch.zeros(1, 3, 1, 4)
    S[0, 0, 0, :2] = 1  # segment 0: pixels 0, 1
    S[0, 1, 0, 2] = 1  # segment 1: pixel 2
    S[0, 2, 0, 3] = 0.5  # segment 2: half a pixel -> count < 1 -> colour 0
    Y = torch.tensor([[[[0.2, 0.4, 0.9, 0.7]]]])
    for backend in implemented_backends("cpu"):
        hints, mask = segment_hint_colors(S, Y, 3, backend=backend)
        torch.testing.assert_close(hints, torch.tensor([[[[0.3, 0.3, 0.9, 0.0]]]]))
        torch.testing.assert_close(mask, torch.tensor([[[[1.0, 1.0, 1.0, 0.5]]]]))
        hints, mask = segment_hint_colors(S, Y, 1, backend=backend)
        torch.testing.assert_close(hints, torch.tensor([[[[0.3, 0.3, 0.0, 0.0]]]]))
        torch.testing.assert_close(mask, torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]]))


@pytest.mark.usefixtures("one_thread")  # tiny calls: a 2-thread barrier costs more than the work
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    g = torch.Generator().manual_seed(3)
    S = make_segments(2, 4, 3, 5, "soft", dtype=torch.float64, generator=g)
    S[:, 0] *= 3  # counts well away from the threshold 1, so finite differences do not cross it
    Y = make_image(2, 3, 3, 5, dtype=torch.float64, generator=g)
    S.requires_grad_()
    Y.requires_grad_()
    nh = torch.tensor([2, 4])
    assert torch.autograd.gradcheck(lambda s, y: segment_hint_colors(s, y, nh, backend=backend), (S, Y))


def test_empty_segment_passes_no_gradient_through_its_mean():
    S = torch.zeros(1, 2, 2, 2)
    S[0, 0] = 1.0
    S[0, 1, 0, 0] = 0.25  # count 0.25 < 1
    S.requires_grad_()
    Y = torch.rand(1, 3, 2, 2, requires_grad=True)
    for backend in implemented_backends("cpu"):
        hints, mask = segment_hint_colors(S, Y, 2, backend=backend)
        dS, dY = torch.autograd.grad(hints.sum(), [S, Y])
        # Segment 1's colour is 0 and constant: d hints / d S_1 = colour_1 = 0; Y gets only segment 0's share.
        assert torch.all(dS[0, 1] == 0)
        torch.testing.assert_close(dY, torch.full_like(Y, 1.0))  # sum_i gsum_i S_i = (4 / 4) * 1


@pytest.mark.parametrize(
    "make_args, error, words",
    [
        (lambda S, Y: (S[0], Y, 1), ValueError, ["'segments'", "(B, Nc, H, W)", "(4, 5, 6)"]),
        (lambda S, Y: (S, Y[:, :, :, :5], 1), ValueError, ["'image'", "(2, C, 5, 6)", "(2, 3, 5, 5)"]),
        (lambda S, Y: (S, Y[:1], 1), ValueError, ["'image'", "(2, C, 5, 6)", "(1, 3, 5, 6)"]),
        (lambda S, Y: (S, Y, 5), ValueError, ["'num_hints'", "[0, 4]", "5"]),
        (lambda S, Y: (S, Y, torch.tensor([1, -1])), ValueError, ["'num_hints'", "[0, 4]", "-1"]),
        (lambda S, Y: (S, Y, torch.tensor([1, 2, 3])), ValueError, ["'num_hints'", "(2,)", "(3,)"]),
        (lambda S, Y: (S, Y, torch.tensor([1.0, 2.0])), TypeError, ["'num_hints'", "integer", "float32"]),
        (lambda S, Y: (S, (Y * 255).long(), 1), TypeError, ["'image'", "floating-point", "int64"]),
        (lambda S, Y: (S, Y.double(), 1), TypeError, ["'image'", "float32", "float64"]),
        (lambda S, Y: (S, Y.to("meta"), 1), ValueError, ["'image'", "cpu", "meta"]),
        (lambda S, Y: (S.numpy(), Y, 1), TypeError, ["'segments'", "ndarray"]),
    ],
    ids=[
        "rank",
        "width",
        "batch",
        "nh_too_big",
        "nh_negative",
        "nh_shape",
        "nh_float",
        "int_image",
        "mixed_dtype",
        "mixed_device",
        "not_tensor",
    ],
)
def test_bad_inputs_name_argument_expected_and_actual(make_args, error, words):
    S = make_segments(2, 4, 5, 6, "onehot")
    Y = make_image(2, 3, 5, 6)
    with pytest.raises(error) as info:
        segment_hint_colors(*make_args(S, Y))
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_unusable_backend_is_a_clear_error():
    S, Y = make_segments(1, 3, 4, 4, "onehot"), make_image(1, 3, 4, 4)
    with pytest.raises(ValueError, match="'cuda'.*CUDA tensors"):
        segment_hint_colors(S, Y, 1, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        segment_hint_colors(S, Y, 1, backend="fast")
    if usable("cpp", "cpu"):
        with pytest.raises(ValueError, match="'cpp'.*float16"):
            segment_hint_colors(S.half(), Y.half(), 1, backend="cpp")


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_custom_op_registration_opcheck(backend):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the custom op."""
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    S = make_segments(2, 4, 5, 6, "soft").requires_grad_()
    Y = make_image(2, 3, 5, 6).requires_grad_()
    nh = torch.tensor([2, 4])
    torch.library.opcheck(torch.ops.refcolor.segment_hint_colors.default, (S, Y, nh, backend))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_torch_compile_forward_backward(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable")
    torch._dynamo.reset()

    def loss_fn(s, y, nh):
        hints, mask = segment_hint_colors(s, y, nh, backend=backend)
        return (hints * hints).sum() + (mask * y[:, :1]).sum()

    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    S = make_segments(2, 5, 6, 7, "soft").requires_grad_()
    Y = make_image(2, 3, 6, 7).requires_grad_()
    nh = torch.tensor([3, 5])
    expected = torch.autograd.grad(loss_fn(S, Y, nh), [S, Y])
    loss = compiled(S, Y, nh)
    torch.testing.assert_close(loss, loss_fn(S, Y, nh))
    for a, e in zip(torch.autograd.grad(loss, [S, Y]), expected, strict=True):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("backend,device", half_precision_params())
def test_half_precision_within_twice_reference_error(backend, device, dtype):
    """flash-attention's rule: forward and both gradients, error vs float64 at most ~2x that of
    the same-precision reference, and within the dtype's tolerance."""
    if not usable(backend, device):
        pytest.skip(f"{backend} not usable on {device}")
    B, Nc, C, H, W = (4, 30, 3, 64, 48) if device == "cuda" else (3, 12, 3, 24, 20)
    g = torch.Generator().manual_seed(5)
    S64 = make_segments(B, Nc, H, W, "soft", dtype=torch.float64, generator=g).to(device)
    Y64 = make_image(B, C, H, W, dtype=torch.float64, generator=g).to(device)
    gH = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(device)
    gM = torch.randn(B, 1, H, W, generator=g, dtype=torch.float64).to(device)
    nh = torch.tensor([0, 7, Nc, 20][:B], device=device)
    exact = run("reference", S64, Y64, nh, gH, gM)
    same_precision = run("reference", S64.to(dtype), Y64.to(dtype), nh, gH.to(dtype), gM.to(dtype))
    kernel = run(backend, S64.to(dtype), Y64.to(dtype), nh, gH.to(dtype), gM.to(dtype))
    eps = torch.finfo(dtype).eps
    for name, k, r, e in zip(
        ("hints", "mask", "grad_segments", "grad_image"), kernel, same_precision, exact, strict=True
    ):
        assert k.dtype == dtype
        err = rel_err(k, e)
        assert err <= 2 * rel_err(r, e) + eps, f"{name}: {err:.2e} vs reference {rel_err(r, e):.2e}"
        assert err <= HALF_TOL[dtype], f"{name}: {err:.2e} > {HALF_TOL[dtype]:.1e}"

"""RandomTPS: shapes, the grid contract (grid_sample(images, grid) == warped), direction of the
warp, reproducibility, the identity at jitter 0, bounded displacement, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from refcolor.nn import RandomTPS
from refcolor.nn.random_tps import control_lattice
from refcolor.ops.tps import pixel_coordinates, tps_grid
from tests.helpers import make_image

BACKENDS = ["reference", "auto"]


def smooth_image(B, C, H, W, *, dtype=torch.float32, seed=0) -> torch.Tensor:
    """Low-frequency content: bilinear sampling errors from ulp-level grid differences stay tiny."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(B, C, 4, 5, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True).to(dtype)


def identity_grid(H, W, dtype=torch.float32) -> torch.Tensor:
    xs, ys = pixel_coordinates((H, W), dtype=dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C, H, W", [(1, 20, 20), (3, 17, 31), (3, 30, 14)])
def test_shapes_dtypes_and_grid_contract(backend, dtype, C, H, W):
    module = RandomTPS(jitter=0.15, backend=backend, seed=3)
    images = smooth_image(4, C, H, W, dtype=dtype)
    warped, grid = module(images)
    assert warped.shape == images.shape and warped.dtype == dtype
    assert grid.shape == (4, H, W, 2) and grid.dtype == dtype
    resampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    torch.testing.assert_close(resampled, warped, atol=1e-5, rtol=0)
    assert not torch.allclose(warped, images, atol=1e-3)  # it did warp


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_grid_contract_on_noise_images(backend, padding_mode):
    """High-frequency content, both padding modes; the reference backend is bit-exact."""
    module = RandomTPS(grid_sizes=(3, 5), jitter=0.2, padding_mode=padding_mode, backend=backend, seed=1)
    images = make_image(6, 3, 33, 27)
    warped, grid = module(images)
    resampled = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    if backend == "reference":
        assert torch.equal(resampled, warped)
    else:
        torch.testing.assert_close(resampled, warped, atol=1e-4, rtol=0)
    if padding_mode == "zeros":  # jitter 0.2 moves the frame: some pixels come from the padding
        H, W = images.shape[-2:]
        outside = (grid[..., 0].abs() > 1 + 2 / (W - 1)) | (grid[..., 1].abs() > 1 + 2 / (H - 1))  # > 1 px
        assert outside.any()
        assert torch.all(warped.permute(0, 2, 3, 1)[outside].abs() < 1e-6)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_direction_and_bounded_displacement(n):
    """Warped pixels on the control lattice show the input at src = lattice + offset, |offset| <= jitter."""
    jitter = 0.12
    module = RandomTPS(grid_sizes=n, jitter=jitter, backend="reference", seed=n)
    H, W = 25, 37  # 24 and 36 are divisible by n - 1 = 2, 3, 4: lattice points are pixel centres
    images = make_image(4, 2, H, W)
    ((members, src, dst),) = module.sample_points(4, generator=torch.Generator().manual_seed(11))
    warped, grid = module(images, generator=torch.Generator().manual_seed(11))
    assert torch.equal(members, torch.arange(4))
    torch.testing.assert_close(dst[0], control_lattice(n))
    rows = torch.arange(n) * (H - 1) // (n - 1)
    cols = torch.arange(n) * (W - 1) // (n - 1)
    at_lattice = grid[:, rows][:, :, cols].reshape(4, n * n, 2).double()  # row-major, as the lattice
    torch.testing.assert_close(at_lattice, src, atol=1e-5, rtol=0)
    identity = identity_grid(H, W, torch.float64)[rows][:, cols].reshape(1, n * n, 2)
    displacement = (at_lattice - identity).abs()
    assert displacement.max() <= jitter + 1e-5
    assert displacement.max() > jitter / 2  # uniform offsets actually use the range
    # Content moves from src to the lattice: warped[lattice pixel] == image sampled at src.
    expected = F.grid_sample(images, src.float()[:, None], align_corners=True, padding_mode="border")
    got = warped[:, :, rows][:, :, :, cols].reshape(4, 2, 1, n * n)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_fix_border_and_margin():
    n, H, W = 5, 25, 25
    module = RandomTPS(grid_sizes=n, jitter=0.1, margin=0.5, fix_border=True, backend="reference", seed=0)
    ((_, src, dst),) = module.sample_points(3, generator=torch.Generator().manual_seed(2))
    assert dst.min() == -0.5 and dst.max() == 0.5
    offset = (src - dst).reshape(3, n, n, 2)
    assert torch.all(offset[:, [0, -1]] == 0) and torch.all(offset[:, :, [0, -1]] == 0)
    assert torch.all(offset[:, 1:-1, 1:-1].abs() > 0)
    _, grid = module(make_image(3, 1, H, W), generator=torch.Generator().manual_seed(2))
    # Lattice ticks -0.5, -0.25, 0, 0.25, 0.5 are pixels 6, 9, 12, 15, 18: the ring's control points
    # stay put (between them the spline only nearly keeps the frame).
    ticks = torch.tensor([6, 9, 12, 15, 18])
    ring = (grid - identity_grid(H, W))[:, ticks][:, :, ticks]  # (3, 5, 5, 2)
    assert ring[:, [0, -1]].abs().max() < 1e-5 and ring[:, :, [0, -1]].abs().max() < 1e-5
    assert ring[:, 1:-1, 1:-1].abs().amax(dim=(1, 2, 3)).min() > 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_jitter_is_identity(backend):
    images = smooth_image(3, 3, 19, 26)
    warped, grid = RandomTPS(jitter=0.0, backend=backend, seed=0)(images)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(grid, identity_grid(19, 26).expand(3, -1, -1, -1), atol=1e-5, rtol=0)


def test_reproducible_with_seed_and_generator():
    images = make_image(4, 3, 16, 16)
    a1, g1 = RandomTPS(seed=5, backend="reference")(images)
    a2, g2 = RandomTPS(seed=5, backend="reference")(images)
    assert torch.equal(a1, a2) and torch.equal(g1, g2)
    # The private generator advances: the next call differs, manual_seed restarts the sequence.
    module = RandomTPS(seed=5, backend="reference")
    first = module(images)[1]
    second = module(images)[1]
    assert torch.equal(first, g1) and not torch.equal(second, g1)
    assert torch.equal(module.manual_seed(5)(images)[1], g1)
    # An explicit generator wins over the private one and over the global RNG.
    b1 = module(images, generator=torch.Generator().manual_seed(9))
    b2 = RandomTPS(backend="reference")(images, generator=torch.Generator().manual_seed(9))
    assert torch.equal(b1[0], b2[0]) and torch.equal(b1[1], b2[1])
    # Without seed or generator: torch's global CPU generator.
    torch.manual_seed(123)
    c1 = RandomTPS(backend="reference")(images)[1]
    torch.manual_seed(123)
    c2 = RandomTPS(backend="reference")(images)[1]
    assert torch.equal(c1, c2)


def test_different_seeds_differ():
    images = make_image(2, 3, 16, 16)
    _, g1 = RandomTPS(seed=0, backend="reference")(images)
    _, g2 = RandomTPS(seed=1, backend="reference")(images)
    assert (g1 - g2).abs().max() > 1e-3


def test_per_sample_grid_sizes():
    """Each sample draws its own lattice size; each group is solved and warped on its own."""
    module = RandomTPS(grid_sizes=(3, 5), jitter=0.2, backend="reference", seed=4)
    draws = module.sample_points(16, generator=torch.Generator().manual_seed(8))
    assert [d[1].shape[1] for d in draws] == [9, 25]  # both sizes drawn in this batch
    members = torch.cat([d[0] for d in draws])
    assert torch.equal(members.sort().values, torch.arange(16))
    images = make_image(16, 3, 21, 18)
    warped, grid = module(images, generator=torch.Generator().manual_seed(8))
    for idx, src, dst in draws:
        torch.testing.assert_close(grid[idx].double(), tps_grid(src, dst, (21, 18)), atol=1e-5, rtol=0)
    resampled = F.grid_sample(images, grid, padding_mode="border", align_corners=True)
    assert torch.equal(resampled, warped)


def test_every_sample_draws_its_own_jitter():
    """Samples of one lattice size get independent offsets, uniform in [-jitter, jitter]: distinct
    warps, and the offsets' spread matches the uniform law (variance jitter^2 / 3)."""
    module = RandomTPS(grid_sizes=(4,), jitter=0.2, seed=0)
    ((members, src, dst),) = module.sample_points(64)
    assert torch.equal(members, torch.arange(64))
    offsets = src - dst  # (64, 16, 2)
    assert offsets.abs().max() <= 0.2 and offsets.abs().max() > 0.19
    assert all(not torch.equal(offsets[0], offsets[b]) for b in range(1, 64))
    per_point_spread = offsets.var(dim=0)  # across samples, for every control point and axis
    torch.testing.assert_close(per_point_spread.mean().item(), 0.2**2 / 3, rtol=0.1, atol=0)
    _, grid = module(torch.zeros(3, 1, 9, 9))
    assert not torch.allclose(grid[0], grid[1]) and not torch.allclose(grid[1], grid[2])


def test_gradient_reaches_images():
    images = smooth_image(2, 3, 12, 12).requires_grad_()
    warped, grid = RandomTPS(seed=0, backend="reference")(images)
    assert not grid.requires_grad
    warped.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_images_get_the_cpu_draw():
    images = smooth_image(3, 3, 24, 20)
    w_cpu, g_cpu = RandomTPS(seed=2)(images)
    w_gpu, g_gpu = RandomTPS(seed=2)(images.cuda())
    assert w_gpu.is_cuda and g_gpu.is_cuda
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, atol=1e-5, rtol=0)
    torch.testing.assert_close(w_gpu.cpu(), w_cpu, atol=1e-4, rtol=0)


def test_repr_and_export():
    import refcolor.nn

    assert "RandomTPS" in refcolor.nn.__all__
    text = repr(RandomTPS(grid_sizes=[4], jitter=0.05, seed=1))
    assert "grid_sizes=(4,)" in text and "jitter=0.05" in text and "seed=1" in text


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"grid_sizes": 1}, ValueError, "'grid_sizes' must hold sizes n >= 2"),
        ({"grid_sizes": ()}, TypeError, "'grid_sizes' must be an int or a non-empty sequence"),
        ({"grid_sizes": (3, 2.5)}, TypeError, "'grid_sizes'"),
        ({"grid_sizes": "3"}, TypeError, "'grid_sizes'"),
        ({"grid_sizes": b"\x03\x04"}, TypeError, "'grid_sizes'"),  # bytes iterate as ints: still not sizes
        ({"jitter": -0.1}, ValueError, r"'jitter' must be in \[0.0, inf\), got -0.1"),
        ({"jitter": math.nan}, ValueError, "'jitter'"),
        ({"jitter": "0.1"}, TypeError, "'jitter' must be a real number, got str"),
        ({"margin": 1.0}, ValueError, r"'margin' must be in \[0.0, 1.0\), got 1.0"),
        ({"margin": -0.5}, ValueError, "'margin'"),
        ({"fix_border": 1}, TypeError, "'fix_border' must be a bool"),
        ({"padding_mode": "reflection"}, ValueError, "'padding_mode' must be one of"),
        ({"backend": None}, TypeError, "'backend' must be a str"),
        ({"seed": 1.5}, TypeError, "'seed' must be an int or None, got float"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomTPS(**kwargs)


def test_bad_forward_arguments():
    module = RandomTPS(seed=0, backend="reference")
    with pytest.raises(ValueError, match=r"'images' must have shape \(B, C, H, W\)"):
        module(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="'images' must be a floating-point tensor, got dtype uint8"):
        module(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="'images' must be a torch.Tensor"):
        module([[1.0]])
    with pytest.raises(ValueError, match="'images' .* must not be empty"):
        module(torch.rand(0, 3, 8, 8))
    with pytest.raises(TypeError, match="'generator' must be a torch.Generator or None, got int"):
        module(torch.rand(1, 3, 8, 8), generator=0)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        RandomTPS(backend="nope")(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="'batch_size' must be a positive int"):
        module.sample_points(0)

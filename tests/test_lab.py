"""refcolor.lab: sRGB <-> CIE Lab (D65) against scikit-image on its photos and at the gamut's edges,
the round trip, the normalisation, gradients (float64 gradcheck) and bad input."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from refcolor import lab

skimage_color = pytest.importorskip("skimage.color")
skimage_data = pytest.importorskip("skimage.data")


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)


def _photos() -> list[np.ndarray]:
    # scikit-image's bundled colour photos, float64 in [0, 1], cropped to keep the test fast.
    return [
        getattr(skimage_data, name)()[:96, :128].astype(np.float64) / 255 for name in ("astronaut", "chelsea", "coffee")
    ]


def _cube_edges(steps: int = 9) -> np.ndarray:
    """Every corner and edge of the sRGB cube (two channels at 0 or 1, the third swept), (1, N, 3)."""
    values = np.linspace(0, 1, steps)
    points = set()
    for free in range(3):
        for fixed in itertools.product((0.0, 1.0), repeat=2):
            for v in values:
                point = list(fixed)
                point.insert(free, float(v))
                points.add(tuple(point))
    return np.array(sorted(points))[None]


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-6), (torch.float32, 2e-3)])
def test_rgb_to_lab_matches_scikit_image_on_photos_and_cube_edges(dtype, atol):
    for image in [*_photos(), _cube_edges()]:
        expected = skimage_color.rgb2lab(image)  # D65, 2 degree observer
        got = lab.rgb_to_lab(_to_tensor(image).to(dtype))[0].permute(1, 2, 0).double().numpy()
        np.testing.assert_allclose(got, expected, atol=atol * 100, rtol=0)


def test_lab_to_rgb_matches_scikit_image_inside_and_outside_the_gamut():
    L, a, b = np.meshgrid(
        np.linspace(0, 100, 11), np.linspace(-120, 120, 13), np.linspace(-120, 120, 13), indexing="ij"
    )
    grid = np.stack([L.ravel(), a.ravel(), b.ravel()], axis=-1)[None]  # many of these are out of gamut
    with warnings.catch_warnings():
        # scikit-image warns about the negative Z values it clips (out-of-gamut colours, as we clip them).
        warnings.simplefilter("ignore")
        expected = skimage_color.lab2rgb(grid)
    got = lab.lab_to_rgb(_to_tensor(grid))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_round_trip_and_normalised_range():
    for image in [*_photos(), _cube_edges()]:
        rgb = _to_tensor(image)
        luminance, ab = lab.rgb_to_normalized_lab(rgb)
        assert luminance.min() >= -1 - 1e-9 and luminance.max() <= 1 + 1e-9
        assert ab.abs().max() <= 1.0  # sRGB's a*b* fit inside +-110
        back = lab.normalized_lab_to_rgb(luminance, ab)
        torch.testing.assert_close(back, rgb, atol=1e-6, rtol=0)


def test_normalisation_values_and_gray():
    white_black = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    luminance, ab = lab.rgb_to_normalized_lab(white_black)
    torch.testing.assert_close(luminance.flatten(), torch.tensor([1.0, -1.0], dtype=torch.float64), atol=1e-4, rtol=0)
    assert ab.abs().max() < 1e-4
    gray = lab.gray_rgb(luminance)
    # Equal channels up to the 4-digit D65 white point and XYZ matrices (both libraries use them).
    assert (gray[:, 0] - gray[:, 1]).abs().max() < 1e-5 and (gray[:, 1] - gray[:, 2]).abs().max() < 1e-5


def test_conversions_are_differentiable_in_float64():
    generator = torch.Generator().manual_seed(0)
    # Away from the piecewise joints (linear / power parts), where the derivative jumps.
    rgb = (0.1 + 0.8 * torch.rand(1, 3, 3, 4, generator=generator, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lab.rgb_to_lab, (rgb,))
    luminance = (0.2 * torch.rand(1, 1, 3, 4, generator=generator, dtype=torch.float64)).requires_grad_()
    ab = (0.1 * torch.rand(1, 2, 3, 4, generator=generator, dtype=torch.float64) - 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lab.normalized_lab_to_rgb, (luminance, ab))


def test_gradients_are_finite_at_black_white_and_the_gamut_edges():
    rgb = _to_tensor(_cube_edges()).clone().requires_grad_()
    luminance, ab = lab.rgb_to_normalized_lab(rgb)
    (luminance.sum() + ab.sum()).backward()
    assert torch.isfinite(rgb.grad).all()
    luminance = torch.linspace(-1, 1, 5).view(1, 1, 1, 5).requires_grad_()
    ab = torch.full((1, 2, 1, 5), 0.9).requires_grad_()  # far out of gamut at the extremes
    lab.normalized_lab_to_rgb(luminance, ab).sum().backward()
    assert torch.isfinite(luminance.grad).all() and torch.isfinite(ab.grad).all()


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(
        ValueError, match=r"rgb_to_lab: argument 'rgb' must have shape \(B, 3, H, W\), got \(1, 4, 2, 2\)"
    ):
        lab.rgb_to_lab(torch.zeros(1, 4, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        lab.rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="argument 'ab' must be"):
        lab.normalized_lab_to_rgb(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 3, 2))

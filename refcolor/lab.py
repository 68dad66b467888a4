"""CIE L*a*b* (D65) for the exemplar colorizer: the one normalisation it uses everywhere.

The conversion is kornia.color's (sRGB <-> linear RGB <-> XYZ <-> Lab, D65 white (0.95047, 1,
1.08883), the CIE constants 0.008856 and 7.787 that scikit-image uses too): tests/test_lab.py
checks it against skimage.color.rgb2lab / lab2rgb on scikit-image's photos, on the corners and
edges of the sRGB cube and on out-of-gamut a*b*, and gradchecks it in float64, so no conversion of
our own is needed.

Normalisation (the models' range, [-1, 1] like the rest of refcolor's models):
    L_n  = (L* - 50) / 50      L* in [0, 100]        -> [-1, 1]
    ab_n = (a*, b*) / 110      sRGB a* in [-86, 98], b* in [-108, 95] -> within [-0.99, 0.89]
so a tanh output covers every sRGB colour; 110 is the scale of Zhang et al.'s and Xu et al.'s code.
lab_to_rgb clips out-of-gamut colours to [0, 1] (kornia's clip=True, as scikit-image clips).
"""

from __future__ import annotations

import torch
from torch import Tensor

L_CENTER, L_SCALE = 50.0, 50.0
AB_SCALE = 110.0


def _color():
    import kornia.color  # a core dependency of refcolor (the augmentation's colour jitter uses it)

    return kornia.color


def _check_rgb(op: str, name: str, image: Tensor) -> None:
    if not isinstance(image, Tensor) or not image.is_floating_point():
        got = image.dtype if isinstance(image, Tensor) else type(image).__name__
        raise TypeError(f"{op}: argument '{name}' must be a floating-point tensor (B, 3, H, W), got {got}")
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{op}: argument '{name}' must have shape (B, 3, H, W), got {tuple(image.shape)}")


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> CIE Lab (B, 3, H, W): L* in [0, 100], a*, b* unscaled."""
    _check_rgb("rgb_to_lab", "rgb", rgb)
    return _color().rgb_to_lab(rgb)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab (B, 3, H, W) -> sRGB in [0, 1] (out-of-gamut colours clipped)."""
    _check_rgb("lab_to_rgb", "lab", lab)
    return _color().lab_to_rgb(lab, clip=True)


def rgb_to_normalized_lab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB (B, 3, H, W) in [0, 1] -> (L_n (B, 1, H, W), ab_n (B, 2, H, W)), module docstring's scaling."""
    lab = rgb_to_lab(rgb)
    return (lab[:, :1] - L_CENTER) / L_SCALE, lab[:, 1:] / AB_SCALE


def normalized_lab_to_rgb(luminance: Tensor, ab: Tensor) -> Tensor:
    """(L_n (B, 1, H, W), ab_n (B, 2, H, W)) -> sRGB (B, 3, H, W) in [0, 1]."""
    if luminance.dim() != 4 or luminance.shape[1] != 1:
        raise ValueError(
            f"normalized_lab_to_rgb: argument 'luminance' must be (B, 1, H, W), got {tuple(luminance.shape)}"
        )
    if ab.dim() != 4 or ab.shape[1] != 2 or ab.shape[0] != luminance.shape[0] or ab.shape[-2:] != luminance.shape[-2:]:
        raise ValueError(
            f"normalized_lab_to_rgb: argument 'ab' must be (B, 2, H, W) = "
            f"{(luminance.shape[0], 2, *luminance.shape[-2:])}, got {tuple(ab.shape)}"
        )
    lab = torch.cat([luminance * L_SCALE + L_CENTER, ab * AB_SCALE], dim=1)
    return lab_to_rgb(lab)


def gray_rgb(luminance: Tensor) -> Tensor:
    """L_n (B, 1, H, W) -> the gray sRGB image (B, 3, H, W) of that luminance (a* = b* = 0)."""
    return normalized_lab_to_rgb(luminance, luminance.new_zeros(luminance.shape[0], 2, *luminance.shape[-2:]))


__all__ = [
    "AB_SCALE",
    "L_CENTER",
    "L_SCALE",
    "gray_rgb",
    "lab_to_rgb",
    "normalized_lab_to_rgb",
    "rgb_to_lab",
    "rgb_to_normalized_lab",
]

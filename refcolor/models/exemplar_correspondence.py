"""The exemplar's colours warped onto the input by feature correspondence (issue 30): what the
exemplar colorizer adds to Xu et al.'s AdaIN transfer when `correspondence = "features"`.

Xu et al.'s transfer sub-net takes the exemplar's feature *statistics* (AdaIN), never its layout,
so two objects of one gray level get one colour whatever the exemplar shows for each. The learned
exemplar methods the paper compares against (He et al., "Deep Exemplar-based Colorization",
SIGGRAPH 2018) warp the exemplar's colours by a dense correspondence and let the colorization net
choose where to trust them. This module computes that warp with no learned weights:

    f(x) = the frozen encoder's four levels of gray_rgb(x), each brought to the lattice (bilinear,
           H / stride x W / stride) and L2-normalised per position, concatenated, normalised again;
    q = f(input luminance), k = f(exemplar luminance)  -- both gray: one domain, so the match is
                                                          on structure, not on colour;
    v = [the exemplar's a*b* averaged over each lattice cell, k];
    [W_ab, k_bar] = softmax(q k^T / temperature) v     -- one call of refcolor.ops.scft_attention;
    confidence = <q, k_bar>                            -- the attention's expected cosine similarity;
    W_ab and confidence upsampled (bilinear) to the input's H x W.

Images larger than `size` (the model's working resolution, shorter side) are matched at that size:
the lattice, and so the attention's cost, does not grow with the input (a 512 px input on a
stride-2 lattice would be 65,536 x 65,536 logits: 53 s per image on one CPU thread, measured).

The colorization sub-net then sees [L, M * T_ab, M, W_ab, confidence] (7 channels). Measured with
no training on the 80 held-out photo crops (augmented-self exemplars, 128 px, `docs/training_log.md`):
Lab(L, W_ab) alone scores 33.9 dB at stride 4 (36.4 at stride 2, temperature 0.01) where Reinhard's
global transfer scores 25.2 and pasting the exemplar's a*b* by position 30.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.data.sketch_preparation import scaled_size
from refcolor.lab import gray_rgb, rgb_to_normalized_lab
from refcolor.models.exemplar_encoder import ExemplarEncoder
from refcolor.nn.match_features import unit_features_on_lattice
from refcolor.ops.scft_attention import scft_attention

CORRESPONDENCES = ("none", "features")


def lattice_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The correspondence lattice of an H x W image: ceil(H / stride) x ceil(W / stride)."""
    return -(-height // stride), -(-width // stride)


def lattice_features(encoder: ExemplarEncoder, luminance: Tensor, stride: int) -> Tensor:
    """(B, N, d) unit vectors: every encoder level of gray_rgb(luminance) on the lattice (module docstring)."""
    size = lattice_size(luminance.shape[-2], luminance.shape[-1], stride)
    return unit_features_on_lattice(encoder(gray_rgb(luminance)), size).flatten(2).transpose(1, 2)


@torch.no_grad()
def warp_exemplar_colours(
    encoder: ExemplarEncoder,
    luminance: Tensor,
    exemplar: Tensor,
    *,
    stride: int = 4,
    temperature: float = 0.01,
    size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(W_ab (B, 2, H, W) normalised a*b*, confidence (B, 1, H, W) in [-1, 1]) for L_n `luminance`
    (B, 1, H, W) and an sRGB `exemplar` (B, 3, H', W') of any size (module docstring); size: match
    at most at this shorter side (None: as given). No autograd: nothing here is learned, and the
    encoder is frozen."""
    full_size = tuple(luminance.shape[-2:])
    luminance, exemplar = _at_most(luminance, size), _at_most(exemplar, size)
    exemplar_luminance, exemplar_ab = rgb_to_normalized_lab(exemplar)
    q = lattice_features(encoder, luminance, stride)
    k = lattice_features(encoder, exemplar_luminance, stride)
    cells = lattice_size(exemplar.shape[-2], exemplar.shape[-1], stride)
    ab = F.adaptive_avg_pool2d(exemplar_ab, cells).flatten(2).transpose(1, 2)
    out = scft_attention(q, k, torch.cat([ab, k], dim=-1), scale=1.0 / temperature)
    B, (h, w) = luminance.shape[0], lattice_size(luminance.shape[-2], luminance.shape[-1], stride)
    warped = out[..., :2].transpose(1, 2).reshape(B, 2, h, w)
    confidence = (q * out[..., 2:]).sum(-1).view(B, 1, h, w)
    return (
        F.interpolate(warped, size=full_size, mode="bilinear", align_corners=False),
        F.interpolate(confidence, size=full_size, mode="bilinear", align_corners=False),
    )


def _at_most(images: Tensor, size: int | None) -> Tensor:
    """`images` resized (bilinear, antialiased) so that the shorter side is `size`, when larger."""
    H, W = images.shape[-2:]
    if size is None or min(H, W) <= size:
        return images
    shape = scaled_size(H, W, size)
    return F.interpolate(images, size=shape, mode="bilinear", align_corners=False, antialias=True)


__all__ = ["CORRESPONDENCES", "lattice_features", "lattice_size", "warp_exemplar_colours"]

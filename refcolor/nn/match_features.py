"""Feature maps made ready for cosine matching on a lattice: the one rule that the exemplar
correspondence (refcolor.models.exemplar_correspondence) and SCFT's frozen match features
(refcolor.models.scft_colorizer.FrozenSketchFeatures) share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def unit_features_on_lattice(maps: list[Tensor], size: tuple[int, int]) -> Tensor:
    """(B, sum c_i, h, w) unit vectors per cell: every (B, c_i, H_i, W_i) map brought to `size`
    (bilinear), L2-normalised per cell so each map weighs the same, concatenated and normalised
    again, so that dot products are cosine similarities."""
    levels = [F.normalize(F.interpolate(m, size=size, mode="bilinear", align_corners=False), dim=1) for m in maps]
    return F.normalize(torch.cat(levels, dim=1), dim=1)


__all__ = ["unit_features_on_lattice"]

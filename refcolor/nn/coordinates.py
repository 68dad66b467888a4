"""CoordConv inputs (Liu et al., "An intriguing failing of convolutional neural networks and the
CoordConv solution", NeurIPS 2018): the pixel's normalised position as two more channels.

Convolutions are translation-equivariant, so two flat areas of a sketch look the same to them; the
colorizers that must tell areas apart (SCFT's attention finding the corresponding reference cell,
GuidingPainter's segmentation giving separate areas separate regions) can opt in to these channels.
"""

from __future__ import annotations

import torch
from torch import Tensor


def with_coordinates(images: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C + 2, H, W): the images, then x and y, each from -1 (left / top pixel)
    to 1 (right / bottom pixel), in the images' dtype and device."""
    B, _, H, W = images.shape
    ys = torch.linspace(-1, 1, H, dtype=images.dtype, device=images.device)
    xs = torch.linspace(-1, 1, W, dtype=images.dtype, device=images.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.cat([images, torch.stack([grid_x, grid_y]).expand(B, 2, H, W)], dim=1)


__all__ = ["with_coordinates"]

"""Adaptive instance normalisation (Huang & Belongie, ICCV 2017), the colour transfer of the exemplar
colorizer's transfer sub-net:

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)

mu and sigma are per sample and channel, over the spatial positions (sigma = sqrt(var + eps), the
biased variance, as in the paper's code). No learnt parameters: the style input sets the affine map.
Reinhard et al.'s global colour transfer (2001) is the same operation on Lab pixels."""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5


def channel_stats(features: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> (mean, std), each (B, C, 1, 1): per-channel statistics over H, W."""
    if features.dim() != 4:
        raise ValueError(f"channel_stats: argument 'features' must be (B, C, H, W), got {tuple(features.shape)}")
    var, mean = torch.var_mean(features, dim=(-2, -1), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def adain(content: Tensor, style: Tensor, eps: float = EPS) -> Tensor:
    """AdaIN(content, style): content (B, C, H, W) with style's (B, C, H', W') channel mean and std."""
    if content.dim() != 4 or style.dim() != 4 or content.shape[:2] != style.shape[:2]:
        raise ValueError(
            f"adain: arguments 'content' and 'style' must be (B, C, H, W) with the same B and C, "
            f"got {tuple(content.shape)} and {tuple(style.shape)}"
        )
    content_mean, content_std = channel_stats(content, eps)
    style_mean, style_std = channel_stats(style, eps)
    return style_std * (content - content_mean) / content_std + style_mean


__all__ = ["EPS", "adain", "channel_stats"]

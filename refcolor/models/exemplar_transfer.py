"""The transfer sub-net of the exemplar colorizer (Xu et al., "Stylization-Based Architecture for Fast
Deep Exemplar Colorization", CVPR 2020): a feed-forward AdaIN network that gives the gray image the
exemplar's colours, coarsely.

    gray image --E_1--> AdaIN(., s_1) --E_2--> AdaIN(., s_2) --E_3--> AdaIN(., s_3) --E_4--> AdaIN(., s_4)
                            |  t_1                 |  t_2                 |  t_3                 |  t_4
    exemplar   --E-->  s_1, s_2, s_3, s_4 (its features at the same levels)                       v
                                           decoder: t_4 -> (+t_3) -> (+t_2) -> (+t_1) -> (+L) -> a*b*

E is refcolor.models.exemplar_encoder.ExemplarEncoder (frozen, pretrained; levels E_1..E_4). The
stylisation is progressive: each level's AdaIN output t_i is what the next level encodes, so the
deeper statistics are matched on already-stylised features. Skip connections: the decoder has four
levels, from t_4 up; each upsamples its input to the next t_i's size (bilinear), concatenates t_i
and applies `convs_per_level` 3x3 conv + ReLU (no normalisation: it would undo AdaIN's statistics).
A last stage at the input's resolution concatenates the luminance itself (the edges the colours
must follow) and outputs tanh a*b* in the normalised range of refcolor.lab: T_ab. The luminance
is given, so the decoder only predicts colour; the transfer output image is Lab(L, T_ab).
Any H, W work (the decoder resizes to each skip's size).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.lab import gray_rgb
from refcolor.models.adain import adain
from refcolor.models.exemplar_encoder import LEVELS, ExemplarEncoder


class TransferOutput(NamedTuple):
    t_ab: Tensor  # (B, 2, H, W) normalised a*b* (refcolor.lab), tanh
    stylised: list[Tensor]  # t_1..t_4: the AdaIN outputs (the content targets of the losses)
    style_features: list[Tensor]  # s_1..s_4: the exemplar's features


def _conv_stack(in_channels: int, out_channels: int, count: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(count):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class TransferNet(nn.Module):
    """Transfer sub-net; see the module docstring.

    forward(luminance (B, 1, H, W) in [-1, 1] (refcolor.lab's L_n), exemplar (B, 3, H', W') sRGB in
    [0, 1]) -> TransferOutput.

    Args:
        encoder: "vgg19" or "efficientnet-lite0" (ExemplarEncoder; random weights until
            `encoder.load_pretrained()` or a weights file fills them).
        decoder_widths: channels of the four decoder levels, deepest first.
        convs_per_level: 3x3 convs per decoder level.
    """

    def __init__(self, encoder: str, decoder_widths: tuple[int, ...], convs_per_level: int = 1) -> None:
        super().__init__()
        if len(decoder_widths) != LEVELS:
            raise ValueError(f"TransferNet: 'decoder_widths' must hold {LEVELS} widths, got {decoder_widths}")
        self.encoder = ExemplarEncoder(encoder)
        channels = self.encoder.channels
        stages, previous = [], 0
        for level, width in zip(reversed(range(LEVELS)), decoder_widths, strict=True):
            stages.append(_conv_stack(previous + channels[level], width, convs_per_level))
            previous = width
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Sequential(
            _conv_stack(previous + 1, decoder_widths[-1], 1), nn.Conv2d(decoder_widths[-1], 2, 3, padding=1)
        )

    def stylise(self, luminance: Tensor, exemplar: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(t_1..t_4, s_1..s_4): the progressive AdaIN of the gray image's features to the exemplar's."""
        enc = self.encoder
        style = enc(exemplar)
        stylised, x = [], gray_rgb(luminance)
        for level in range(LEVELS):
            raw = enc.level(level, x)
            t = adain(raw / enc.scales[level], style[level])
            stylised.append(t)
            x = t * enc.scales[level]
        return stylised, style

    def forward(self, luminance: Tensor, exemplar: Tensor) -> TransferOutput:
        stylised, style = self.stylise(luminance, exemplar)
        x: Tensor | None = None
        for stage, level in zip(self.decoder, reversed(range(LEVELS)), strict=True):
            skip = stylised[level]
            inputs = skip if x is None else torch.cat([_resize(x, skip.shape[-2:]), skip], dim=1)
            x = stage(inputs)
        assert x is not None
        x = torch.cat([_resize(x, luminance.shape[-2:]), luminance], dim=1)
        return TransferOutput(torch.tanh(self.head(x)), stylised, style)


def _resize(x: Tensor, size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


__all__ = ["TransferNet", "TransferOutput"]

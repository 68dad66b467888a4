"""SCFTColorizer: the reference-based sketch colorization generator of Lee et al., "Reference-Based
Sketch Image Colorization using Augmented-Self Reference and Dense Semantic Correspondence",
CVPR 2020, laid out as the public re-implementations agree.

    sketch (B, 1, H, W)    --E_s-->  V_s (B, dim, h, w)  \
                                                          SCFT -> v* -> residual blocks -> U-Net decoder -> tanh
    reference (B, 3, H, W) --E_r-->  V_r (B, dim, h, w)  /                      (skips from E_s's levels)

Encoders (Eq. 1 of the paper). E_s and E_r are two independent stacks of L conv layers, each layer a
3x3 conv + norm + LeakyReLU(0.2). The layers are grouped in levels of `convs_per_level` layers of
`encoder_widths[i]` channels; the first layer of every level but the first has stride 2, so the last
level is at H / 2^(levels-1). Every layer's activation map f^l is average-pooled (adaptive avg pool)
to the last level's resolution and all of them are concatenated along channels:
V = [f^1; ...; f^L], dim = convs_per_level * sum(encoder_widths).

Widths. The paper's text (and the reviews in shared/papers) give dim = 992 at 16 x 16 for a 256 x 256
input but not the per-layer widths; the re-implementations that follow the supplementary material use
L = 10 conv layers in 5 levels of two, widths 16, 16, 32, 32, 64, 64, 128, 128, 256, 256 (stride 2 on
the first layer of levels 2..5: 256 -> 128 -> 64 -> 32 -> 16), and 2 * (16+32+64+128+256) = 992. The
`paper` preset is exactly that. The `small` preset (CPU training) uses one layer per level, widths
8, 16, 32, 64 at 64 x 64: dim = 120 at 8 x 8.

Bottleneck. refcolor.nn.SCFT (v* = v_s + softmax(Q K^T / sqrt(dim)) V, through the fused
refcolor.ops.scft_attention) on the flattened maps, then `num_res_blocks` residual blocks
(conv-norm-ReLU-conv-norm + identity) at dim channels.

Decoder. A U-Net: from the deepest level up, the running map is concatenated with E_s's output of that
level (the last layer of the level, same resolution), passed through `convs_per_level` conv layers of
that level's width, and upsampled x2 (nearest) for the next level; a last 3x3 conv to 3 channels and
tanh give the image in [-1, 1] at the input resolution.

Two options beyond the paper, off in both presets, on in the previous bundled model
(configs/scft_by_position.toml; the bundled model since issue 27 keeps only the second, see
configs/bundled_scft.toml; the model card and docs/training_log.md say why):
- `coordinate_channels`: both encoders get the pixel's normalised (x, y) as two more input channels
  (CoordConv, Liu et al. 2018). Convolutions are translation-equivariant, so a cell in a flat
  region looks like every other flat cell and SCFT cannot tell which reference cell corresponds;
  the coordinates give the attention the prior "near the same place", which augmented-self pairs
  (and most references) satisfy.
- `warped_reference_skip`: SCFT's attention (B, N, M) also warps the reference's pixels: every
  sketch cell receives the attention-weighted mean of the reference's p x p pixel patches (p = the
  encoders' downsampling), a full-resolution colour estimate that the decoder gets at every level
  (average-pooled to it). Through the 8 x 8 bottleneck alone, the decoder has to rebuild every
  colour from 248 channels per 16 x 16 px cell; with the skip it only has to align the warped colours
  to the sketch's lines, and the L1 loss trains the attention directly (a wrong cell gives a wrong
  colour), as the triplet loss does.

Options for a correspondence by meaning (issue 27), off by default (the presets are unchanged), on
in the bundled model (configs/bundled_scft.toml):
- `frozen_features = "efficientnet-lite0"`: frozen ImageNet features (EfficientNet-Lite0, its
  `frozen_layers`, each bilinear to SCFT's lattice, L2-normalised per cell, concatenated and
  normalised again) of the sketch, and of a sketch extracted from the reference (XDoG at its fixed
  defaults, what inference does to a colour input), are concatenated to V_s before W_q and to V_r
  before W_k (refcolor.nn.SCFT's match maps); the values stay W_v V_r. Both sides of the match are
  sketches, one domain, so the match is on shapes and parts and not on colour; the deep stages
  (stride 16 and 32) carry what a part is, which the learned encoders' receptive fields (tens of
  pixels) cannot. Measured with no training on 40 held-out images at 128 px under the strong warp
  (docs/training_log.md): stages 5 and 6 find the true 16 x 16 cell within one cell for 64% of
  valid cells where the same-position guess scores 17% (all four ExemplarEncoder levels: 33%).
  One frozen network serves both sides; it is part of the state dict (loaded by
  load_frozen_features(), never trained: no gradient, eval mode kept). `frozen_temperature`: the
  frozen block of W_q and W_k starts as a scaled identity (SCFT's projections keep dim + c
  channels here), so the initial attention logits are (frozen cosine) / frozen_temperature plus
  the learned features' term: training starts from the frozen match instead of from chance.
- `strong_warp_probability`: the share of training references warped by the strong protocol's
  affine + TPS warp (refcolor.data.augmented_self_reference.WARPS["strong"]) instead of the mild
  TPS alone (refcolor.train.tasks.scft); the grid stays the exact correspondence for the triplet
  loss.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.data.sketch import xdog
from refcolor.nn.coordinates import with_coordinates
from refcolor.nn.match_features import unit_features_on_lattice
from refcolor.nn.scft import SCFT
from refcolor.ops import _validation as check

OP = "SCFTColorizer"
NORMS = ("instance", "batch", "none")
FROZEN_FEATURES = ("none", "efficientnet-lite0")
# Stages 5 and 6 of EfficientNet-Lite0 (112 and 192 channels, strides 16 and 32): of the 16 layer
# choices measured with no training (docs/training_log.md, issue 27), the best 16 x 16 match at
# 128 px but for stages 5 to 7 (64.7% against 64.1% within one cell), at half their channels.
DEFAULT_FROZEN_LAYERS = ("stage5", "stage6")


@dataclass(frozen=True)
class SCFTColorizerConfig:
    """Hyper-parameters of SCFTColorizer (JSON-serialisable through to_dict / from_dict).

    image_size: the training resolution (square). forward accepts any H, W divisible by
        `downsampling` (2^(levels-1)); image_size must be too.
    encoder_widths: channels of each encoder level (level i > 0 starts with a stride-2 conv).
    convs_per_level: conv layers per level in the encoders (and the decoder).
    num_res_blocks: residual blocks at the bottleneck, after SCFT.
    norm: "instance" (affine), "batch" or "none".
    negative_slope: of the encoders' and decoder's LeakyReLU.
    scft_backend: default backend of refcolor.ops.scft_attention ("auto", "reference", "sdpa", "triton").
    coordinate_channels: feed both encoders the pixels' normalised (x, y) (module docstring).
    warped_reference_skip: give the decoder the reference's pixels warped by SCFT's attention
        (module docstring).
    frozen_features: "none" or "efficientnet-lite0": frozen ImageNet features of the sketch and of
        the reference's extracted sketch in SCFT's query and key projections (module docstring).
    frozen_layers: the layers of refcolor.models.efficientnet_lite.LAYERS (stem .. stage7) used.
    frozen_temperature: the temperature of the frozen match in the initial attention (> 0).
    strong_warp_probability: in [0, 1], the share of training references with the strong warp.
    """

    image_size: int = 256
    encoder_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    convs_per_level: int = 2
    num_res_blocks: int = 4
    norm: str = "instance"
    negative_slope: float = 0.2
    scft_backend: str = "auto"
    coordinate_channels: bool = False
    warped_reference_skip: bool = False
    frozen_features: str = "none"
    frozen_layers: tuple[str, ...] = DEFAULT_FROZEN_LAYERS
    frozen_temperature: float = 0.03
    strong_warp_probability: float = 0.0

    presets: ClassVar[dict[str, SCFTColorizerConfig]]

    def __post_init__(self):
        def bad(name, expected, got):
            raise ValueError(f"SCFTColorizerConfig: '{name}' must be {expected}, got {got!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        widths = self.encoder_widths
        if isinstance(widths, list):
            widths = tuple(widths)
            object.__setattr__(self, "encoder_widths", widths)
        if not isinstance(widths, tuple) or not widths or not all(is_int(w) and w >= 1 for w in widths):
            bad("encoder_widths", "a non-empty tuple of positive ints", self.encoder_widths)
        if not is_int(self.convs_per_level) or self.convs_per_level < 1:
            bad("convs_per_level", "a positive int", self.convs_per_level)
        if not is_int(self.num_res_blocks) or self.num_res_blocks < 0:
            bad("num_res_blocks", "an int >= 0", self.num_res_blocks)
        if self.norm not in NORMS:
            bad("norm", f"one of {NORMS}", self.norm)
        if (
            isinstance(self.negative_slope, bool)
            or not isinstance(self.negative_slope, (int, float))
            or not (0 <= self.negative_slope < 1)
        ):
            bad("negative_slope", "a float in [0, 1)", self.negative_slope)
        object.__setattr__(self, "negative_slope", float(self.negative_slope))
        for name in ("coordinate_channels", "warped_reference_skip"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "a bool", getattr(self, name))
        if self.frozen_features not in FROZEN_FEATURES:
            bad("frozen_features", f"one of {FROZEN_FEATURES}", self.frozen_features)
        from refcolor.models.efficientnet_lite import LAYERS

        layers = self.frozen_layers
        if isinstance(layers, list):
            layers = tuple(layers)
            object.__setattr__(self, "frozen_layers", layers)
        usable = tuple(name for name in LAYERS if name != "head")
        if not isinstance(layers, tuple) or not layers or not all(name in usable for name in layers):
            bad("frozen_layers", f"a non-empty tuple of names from {usable}", self.frozen_layers)
        if len(set(layers)) != len(layers):
            bad("frozen_layers", "distinct names", self.frozen_layers)
        for name, low, high in (("frozen_temperature", 0.0, math.inf), ("strong_warp_probability", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                bad(name, "a float > 0" if high == math.inf else "a float in [0, 1]", value)
            if name == "frozen_temperature" and value == 0:
                bad(name, "a float > 0", value)
            object.__setattr__(self, name, float(value))
        if not isinstance(self.scft_backend, str):
            bad("scft_backend", "a str", self.scft_backend)
        if not is_int(self.image_size) or self.image_size < 1 or self.image_size % self.downsampling:
            bad("image_size", f"a positive int divisible by {self.downsampling} (2^(levels-1))", self.image_size)

    @property
    def levels(self) -> int:
        return len(self.encoder_widths)

    @property
    def downsampling(self) -> int:
        """Total downsampling factor of the encoders: 2^(levels-1)."""
        return 2 ** (len(self.encoder_widths) - 1)

    @property
    def feature_dim(self) -> int:
        """Channels of V_s, V_r and SCFT: every encoder layer's width, summed."""
        return self.convs_per_level * sum(self.encoder_widths)

    @property
    def frozen_channels(self) -> int:
        """Channels of the frozen match maps (0 with frozen_features "none")."""
        if self.frozen_features == "none":
            return 0
        return sum(FrozenSketchFeatures.layer_channels(name) for name in self.frozen_layers)

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the feature maps at image_size x image_size."""
        side = self.image_size // self.downsampling
        return side, side

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["encoder_widths"] = list(self.encoder_widths)
        d["frozen_layers"] = list(self.frozen_layers)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SCFTColorizerConfig:
        if not isinstance(data, dict):
            raise TypeError(f"SCFTColorizerConfig.from_dict: expected a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SCFTColorizerConfig.from_dict: unknown keys {unknown}; expected some of {sorted(known)}")
        data = dict(data)
        for name in ("encoder_widths", "frozen_layers"):
            if name in data and isinstance(data[name], list):
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> SCFTColorizerConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def preset(cls, name: str, **overrides) -> SCFTColorizerConfig:
        if name not in cls.presets:
            raise ValueError(f"SCFTColorizerConfig: unknown preset {name!r}; expected one of {sorted(cls.presets)}")
        return dataclasses.replace(cls.presets[name], **overrides)


SCFTColorizerConfig.presets = {
    # 10 conv layers (5 levels of 2), 992 channels at 16 x 16 for 256 x 256.
    "paper": SCFTColorizerConfig(
        image_size=256, encoder_widths=(16, 32, 64, 128, 256), convs_per_level=2, num_res_blocks=4
    ),
    # 4 conv layers, 120 channels at 8 x 8 for 64 x 64: trains on a CPU.
    "small": SCFTColorizerConfig(image_size=64, encoder_widths=(8, 16, 32, 64), convs_per_level=1, num_res_blocks=2),
}
PRESETS = SCFTColorizerConfig.presets


class SCFTColorizerOutput(NamedTuple):
    """What SCFTColorizer.forward returns with return_triplet or return_attention."""

    image: Tensor  # (B, 3, H, W) in [-1, 1]
    queries: Tensor | None  # (B, h w, dim): SCFT's projected sketch features; with return_triplet
    keys: Tensor | None  # (B, h' w', dim): projected reference features; with return_triplet
    attention: Tensor | None  # (B, h w, h' w'); with return_attention
    feature_size: tuple[int, int]  # (h, w) of the sketch feature map (row-major cells of `queries`)
    reference_feature_size: tuple[int, int]  # (h', w') of the reference feature map (cells of `keys`)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """3x3 conv (stride 1 or 2) + norm + LeakyReLU."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, norm: str = "instance", negative_slope: float = 0.2):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=norm != "batch"),
            _norm(norm, cout),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class ResidualBlock(nn.Module):
    """x + norm(conv(relu(norm(conv(x)))))."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm != "batch"),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm != "batch"),
            _norm(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SCFTEncoder(nn.Module):
    """E_s or E_r: levels of conv blocks; returns V (every layer pooled to the last level's size and
    concatenated, (B, dim, H / 2^(levels-1), W / 2^(levels-1))) and each level's last output (the
    U-Net skips, finest first)."""

    def __init__(self, in_channels: int, config: SCFTColorizerConfig):
        super().__init__()
        self.levels = nn.ModuleList()
        cin = in_channels
        for i, width in enumerate(config.encoder_widths):
            layers = []
            for j in range(config.convs_per_level):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(
                    ConvBlock(cin, width, stride=stride, norm=config.norm, negative_slope=config.negative_slope)
                )
                cin = width
            self.levels.append(nn.ModuleList(layers))
        self.out_channels = config.feature_dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        activations, skips = [], []
        for level in self.levels:
            for layer in cast(nn.ModuleList, level):
                x = layer(x)
                activations.append(x)
            skips.append(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        pooled = [a if a.shape[-2:] == size else F.adaptive_avg_pool2d(a, size) for a in activations]
        return torch.cat(pooled, dim=1), skips


class SCFTDecoder(nn.Module):
    """U-Net decoder: per level (deepest first) concat E_s's skip, conv blocks, upsample x2; then a
    3x3 conv to 3 channels and tanh."""

    def __init__(self, config: SCFTColorizerConfig):
        super().__init__()
        widths = config.encoder_widths
        self.levels = nn.ModuleList()
        cin = config.feature_dim
        extra = 3 if config.warped_reference_skip else 0
        for i in reversed(range(len(widths))):
            layers = []
            for j in range(config.convs_per_level):
                layers.append(
                    ConvBlock(
                        cin + widths[i] + extra if j == 0 else cin,
                        widths[i],
                        norm=config.norm,
                        negative_slope=config.negative_slope,
                    )
                )
                cin = widths[i]
            self.levels.append(nn.Sequential(*layers))
        self.to_rgb = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, x: Tensor, skips: list[Tensor], warped: Tensor | None = None) -> Tensor:
        """warped: the attention-warped reference (B, 3, H, W) in [-1, 1], with warped_reference_skip."""
        for k, (level, skip) in enumerate(zip(self.levels, reversed(skips), strict=True)):
            if k > 0:
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            inputs = [x, skip]
            if warped is not None:
                size = (int(skip.shape[-2]), int(skip.shape[-1]))
                inputs.append(warped if warped.shape[-2:] == size else F.adaptive_avg_pool2d(warped, size))
            x = level(torch.cat(inputs, dim=1))
        return torch.tanh(self.to_rgb(x))


class FrozenSketchFeatures(nn.Module):
    """The frozen match features of `frozen_features = "efficientnet-lite0"` (module docstring):
    EfficientNet-Lite0 cut after the deepest of `layers` (its head and classifier are not kept).

    forward(sketch (B, 1, H, W) in [0, 1], white paper) -> (B, c, h, w) with (h, w) = `size`: every
    layer of the gray image, bilinear to the lattice, L2-normalised per cell, concatenated and
    normalised again (unit vectors: their dot products are cosine similarities). No autograd.
    Random weights when built; load_pretrained() loads the ImageNet weights. Never trains."""

    def __init__(self, layers: tuple[str, ...]):
        super().__init__()
        from refcolor.models.efficientnet_lite import EfficientNetLite0, _stage_ends

        self.layers = tuple(layers)
        self.channels = sum(self.layer_channels(name) for name in self.layers)
        ends = {f"stage{i + 1}": end for i, end in enumerate(_stage_ends())}
        last = max((ends[name] + 1 for name in self.layers if name != "stem"), default=0)
        full = EfficientNetLite0()
        self._conv_stem, self._bn0 = full._conv_stem, full._bn0
        self._blocks = nn.ModuleList(list(full._blocks)[:last])
        self._ends = {ends[name]: name for name in self.layers if name != "stem"}
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", full.mean.clone(), persistent=False)
        self.register_buffer("std", full.std.clone(), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def layer_channels(name: str) -> int:
        from refcolor.models.efficientnet_lite import _STAGES

        return 32 if name == "stem" else int(_STAGES[int(name.removeprefix("stage")) - 1][5])

    def train(self, mode: bool = True) -> FrozenSketchFeatures:
        return super().train(False)  # frozen: batch norm keeps its ImageNet statistics

    def load_pretrained(self, path=None) -> FrozenSketchFeatures:
        """Copy the ImageNet weights (refcolor.models.efficientnet_lite.weights_path says where they
        are looked up; WeightsUnavailableError when they are not found)."""
        from refcolor.models.efficientnet_lite import EfficientNetLite0

        full = EfficientNetLite0.from_pretrained(path).state_dict()
        self.load_state_dict({k: v for k, v in full.items() if k in self.state_dict()})
        return self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, sketch: Tensor, size: tuple[int, int]) -> Tensor:
        x = (sketch.expand(-1, 3, -1, -1) - self.mean.to(sketch.dtype)) / self.std.to(sketch.dtype)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        found = {"stem": x} if "stem" in self.layers else {}
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._ends:
                found[self._ends[index]] = x
        return unit_features_on_lattice([found[name] for name in self.layers], size)


class SCFTColorizer(nn.Module):
    """The SCFT generator (Lee et al., CVPR 2020): see the module docstring for the layout.

    SCFTColorizer(config=None) (the `paper` preset when None) or SCFTColorizer.from_preset(name, **overrides).

    forward(sketch (B, 1, H, W), reference (B, 3, H', W'), *, return_triplet=False, return_attention=False)
        -> image (B, 3, H, W) in [-1, 1], or an SCFTColorizerOutput with SCFT's queries / keys (for
        refcolor.losses.scft_triplet_loss) and / or attention, and the feature sizes.
    H, W (and H', W') must be divisible by config.downsampling; the reference may have another size
    than the sketch (SCFT attends over all its cells), same batch size, dtype and device.
    """

    def __init__(self, config: SCFTColorizerConfig | None = None):
        super().__init__()
        if config is None:
            config = SCFTColorizerConfig.preset("paper")
        if not isinstance(config, SCFTColorizerConfig):
            raise TypeError(f"{OP}: argument 'config' must be a SCFTColorizerConfig, got {type(config).__name__}")
        self.config = config
        coords = 2 if config.coordinate_channels else 0
        self.sketch_encoder = SCFTEncoder(1 + coords, config)  # E_s
        self.reference_encoder = SCFTEncoder(3 + coords, config)  # E_r
        self.scft = SCFT(config.feature_dim, backend=config.scft_backend, match_channels=config.frozen_channels)
        self.frozen: FrozenSketchFeatures | None = None
        if config.frozen_features != "none":
            self.frozen = FrozenSketchFeatures(config.frozen_layers)
            self._init_frozen_projection()
        self.res_blocks = nn.Sequential(
            *(ResidualBlock(config.feature_dim, config.norm) for _ in range(config.num_res_blocks))
        )
        self.decoder = SCFTDecoder(config)

    @torch.no_grad()
    def _init_frozen_projection(self) -> None:
        """W_q and W_k start block-diagonal: the learned features' block as nn.Linear draws it (its
        rows for the frozen channels zeroed) and alpha I on the frozen channels, alpha^2 =
        sqrt(dim + c) / frozen_temperature, so the initial logits are the learned term plus the
        frozen features' cosine / frozen_temperature."""
        dim = self.config.feature_dim
        alpha = (math.sqrt(dim + self.config.frozen_channels) / self.config.frozen_temperature) ** 0.5
        for linear in (self.scft.to_query, self.scft.to_key):
            linear.weight[dim:] = 0
            linear.weight[:, dim:] = 0
            linear.weight[dim:, dim:] = alpha * torch.eye(self.config.frozen_channels)

    def load_frozen_features(self, path=None) -> SCFTColorizer:
        """Load the frozen network's ImageNet weights (training starts here; a trained model's
        weights file holds them). A no-op without frozen_features."""
        if self.frozen is not None:
            self.frozen.load_pretrained(path)
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SCFTColorizer:
        return cls(SCFTColorizerConfig.preset(name, **overrides))

    def extra_repr(self) -> str:
        c = self.config
        return f"image_size={c.image_size}, dim={c.feature_dim}, feature_size={c.feature_size}"

    # ---------------------------------------------------------------- input checks
    def _check_image(self, name: str, value, channels: int) -> None:
        check.check_image(OP, name, value, channels)
        d = self.config.downsampling
        H, W = value.shape[-2:]
        if H % d or W % d or H == 0 or W == 0:
            raise ValueError(
                f"{OP}: argument '{name}' must have H and W divisible by {d} (the encoders downsample by "
                f"2^{self.config.levels - 1}; trained at {self.config.image_size}x{self.config.image_size}), "
                f"got {tuple(value.shape)}"
            )

    def _check_pair(self, sketch, reference) -> None:
        self._check_image("sketch", sketch, 1)
        self._check_image("reference", reference, 3)
        if reference.shape[0] != sketch.shape[0]:
            raise ValueError(
                f"{OP}: argument 'reference' {tuple(reference.shape)} must have the batch size of 'sketch' "
                f"{tuple(sketch.shape)}"
            )
        if reference.dtype != sketch.dtype:
            raise TypeError(
                f"{OP}: argument 'reference' must have the dtype of 'sketch' ({sketch.dtype}), got {reference.dtype}"
            )
        if reference.device != sketch.device:
            raise ValueError(
                f"{OP}: argument 'reference' must be on the device of 'sketch' ({sketch.device}), "
                f"got {reference.device}"
            )

    # ---------------------------------------------------------------- forward
    def _with_coordinates(self, image: Tensor) -> Tensor:
        return with_coordinates(image) if self.config.coordinate_channels else image

    def _reference_patches(self, reference: Tensor) -> Tensor:
        """(B, 3, H', W') -> (B, M, 3 p p): the reference's p x p pixel patches, one per feature cell."""
        p = self.config.downsampling
        return F.unfold(reference, kernel_size=p, stride=p).transpose(1, 2)

    def _fold_patches(self, patches: Tensor, cells: tuple[int, int]) -> Tensor:
        """(B, N, 3 p p) patches of the sketch's (h, w) cells -> the image (B, 3, h p, w p)."""
        p = self.config.downsampling
        h, w = cells
        return F.fold(patches.transpose(1, 2), (h * p, w * p), kernel_size=p, stride=p)

    def _warp_reference(self, reference: Tensor, attention: Tensor, cells: tuple[int, int]) -> Tensor:
        """Every sketch cell's attention-weighted mean of the reference's patches -> (B, 3, h p, w p)
        (what the forward pass computes inside SCFT's fused op; kept for inspection and tests)."""
        patches = self._reference_patches(reference)
        return self._fold_patches(torch.bmm(attention.to(patches.dtype), patches), cells)

    def encode(self, sketch: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """(V_s (B, dim, h, w), V_r (B, dim, h', w')): the concatenated encoder maps SCFT receives."""
        self._check_pair(sketch, reference)
        sketch, reference = self._with_coordinates(sketch), self._with_coordinates(reference)
        return self.sketch_encoder(sketch)[0], self.reference_encoder(reference)[0]

    def forward(
        self, sketch: Tensor, reference: Tensor, *, return_triplet: bool = False, return_attention: bool = False
    ):
        self._check_pair(sketch, reference)
        v_s, skips = self.sketch_encoder(self._with_coordinates(sketch))
        v_r, _ = self.reference_encoder(self._with_coordinates(reference))
        sketch_match = reference_match = None
        if self.frozen is not None:
            # Both sides as sketches (one domain): the reference is outlined as inference outlines
            # a colour input (XDoG at its fixed defaults).
            sketch_match = self.frozen((sketch + 1) / 2, (int(v_s.shape[-2]), int(v_s.shape[-1])))
            outline = xdog(((reference + 1) / 2).clamp(0, 1))
            reference_match = self.frozen(outline, (int(v_r.shape[-2]), int(v_r.shape[-1])))
        # The warped-reference skip: the reference's pixel patches ride in SCFT's value matrix, so one
        # fused attention moves them too and its backward trains Q and K through them.
        carry = self._reference_patches(reference) if self.config.warped_reference_skip else None
        want_more = return_triplet or return_attention or carry is not None
        fused = self.scft(
            v_s,
            v_r,
            return_triplet=return_triplet,
            return_attention=return_attention,
            carry=carry,
            sketch_match=sketch_match,
            reference_match=reference_match,
        )
        features = fused.features if want_more else fused
        warped = None
        if carry is not None:
            warped = self._fold_patches(fused.carried, (int(v_s.shape[-2]), int(v_s.shape[-1])))
        image = self.decoder(self.res_blocks(features), skips, warped)
        if not (return_triplet or return_attention):
            return image
        return SCFTColorizerOutput(
            image,
            fused.queries,
            fused.keys,
            fused.attention,
            (int(v_s.shape[-2]), int(v_s.shape[-1])),
            (int(v_r.shape[-2]), int(v_r.shape[-1])),
        )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

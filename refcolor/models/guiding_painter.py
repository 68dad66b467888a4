"""GuidingPainter (Cho et al. 2022): segmentation f, hint generation h and colorization g.

    S = f(X)                 sketch (B, 1, H, W) -> Nc region maps, one-hot per pixel (Sec. 3.2)
    U = h(S, Y, Nh)          [hints C, mask M] from the first Nh regions (Sec. 3.3, refcolor.nn.HintGenerator)
    Y^ = g(X, S, U)          tanh image (B, 3, H, W) in [-1, 1] (Sec. 3.4)

f ends in a straight-through Gumbel softmax across the Nc channels while training (hard one-hot
forward, gradient of the soft sample) and in the argmax at inference. The regions are ordered by
channel index: region 0 is the one the model asks the user to colour first (the hint generator
activates low channels most often, so f learns to put the most useful regions there).

Images (target, hints, user colours) live in the tanh range [-1, 1] like the other colorizers.

Extra losses of the official training code (weights in refcolor.losses.GuidingPainterLossWeights):
hint_consistency_loss (all-segment hint map vs target) and smoothness_loss (8-neighbour L1 on the
segmentation logits).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.nn.coordinates import with_coordinates
from refcolor.nn.hint_generator import HintGenerator
from refcolor.ops import _validation as check
from refcolor.ops.segment_hint_colors import segment_hint_colors

NORMS = ("batch", "instance", "group", "none")
TEMPERATURE_SCHEDULES = ("exponential", "linear")
USAGE_EPS = 1e-3  # region_usage_loss's smoothing of the channel shares


# --------------------------------------------------------------------------- Gumbel softmax


def straight_through_gumbel_softmax(
    logits: Tensor,
    tau: float,
    *,
    dim: int = 1,
    generator: torch.Generator | None = None,
    hard: bool = True,
) -> Tensor:
    """Gumbel-softmax sample of `logits` along `dim` (Jang et al. 2017; Maddison et al. 2017).

    g ~ Gumbel(0, 1) i.i.d. (drawn from `generator`: the same seed gives the same sample),
    soft = softmax((logits + g) / tau, dim). With hard=True (straight-through estimator, Bengio et
    al. 2013) the forward value is the one-hot of argmax(soft) along `dim` and the gradient is the
    soft sample's: y = y_hard - soft.detach() + soft. With hard=False: the soft sample.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError("straight_through_gumbel_softmax: 'logits' must be a floating-point tensor")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"straight_through_gumbel_softmax: 'tau' must be a finite number > 0, got {tau!r}")
    gen_device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float32, device=gen_device)
    u = u.to(device=logits.device, dtype=logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))
    soft = torch.softmax((logits + gumbel) / tau, dim=dim)
    if not hard:
        return soft
    index = soft.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return y_hard - soft.detach() + soft


def gumbel_temperature(
    step: int, total_steps: int, start: float = 1.0, end: float = 0.1, schedule: str = "exponential"
) -> float:
    """Gumbel temperature at `step` of `total_steps`, annealed from `start` (step 0) to `end`
    (step >= total_steps; constant afterwards).

    "exponential" (default): tau = start * (end / start) ** (step / total_steps), a geometric decay
    like Jang et al.'s exp(-r t) schedule; it spends as many steps between 1 and 0.3 as between 0.3
    and 0.1, so the segmentation keeps soft, informative gradients early and sharp ones late.
    "linear": tau = start + (end - start) * step / total_steps.
    """
    if schedule not in TEMPERATURE_SCHEDULES:
        raise ValueError(f"gumbel_temperature: schedule must be one of {TEMPERATURE_SCHEDULES}, got {schedule!r}")
    if total_steps <= 0:
        raise ValueError(f"gumbel_temperature: total_steps must be > 0, got {total_steps}")
    if step < 0:
        raise ValueError(f"gumbel_temperature: step must be >= 0, got {step}")
    if not (start > 0 and end > 0):
        raise ValueError(f"gumbel_temperature: start and end must be > 0, got {start}, {end}")
    frac = min(step, total_steps) / total_steps
    if schedule == "linear":
        return float(start + (end - start) * frac)
    return float(start * (end / start) ** frac)


# --------------------------------------------------------------------------- U-Net


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


def _double_conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    bias = norm == "none"
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
        _norm(norm, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
        _norm(norm, cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): `depth` 2x downsamplings (max-pool + two 3x3 conv-norm-ReLU),
    the mirror decoder (2x2 transposed conv, concatenation with the encoder feature of the same
    size, two 3x3 convs) and a 1x1 output conv. Width at level i: min(base_channels * 2**i,
    max_channels). H and W must be divisible by 2**depth."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        depth: int = 4,
        max_channels: int = 1024,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"UNet: norm must be one of {NORMS}, got {norm!r}")
        if depth < 1 or base_channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"UNet: in_channels, out_channels, base_channels and depth must be >= 1, got "
                f"{in_channels}, {out_channels}, {base_channels}, {depth}"
            )
        widths = [min(base_channels * 2**i, max(max_channels, base_channels)) for i in range(depth + 1)]
        self.in_channels, self.out_channels, self.depth, self.widths = in_channels, out_channels, depth, widths
        self.inc = _double_conv(in_channels, widths[0], norm)
        self.down = nn.ModuleList(_double_conv(widths[i], widths[i + 1], norm) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.dec = nn.ModuleList(_double_conv(2 * widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.outc = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        x = self.inc(x)
        for block in self.down:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))
        for up, block in zip(self.up, self.dec, strict=True):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.outc(x)


def _check_image(op: str, name: str, x, channels: int, depth: int, like: Tensor | None = None) -> None:
    check.check_image(op, name, x, channels)
    if like is not None:
        if x.shape[0] != like.shape[0] or x.shape[2:] != like.shape[2:]:
            raise ValueError(
                f"{op}: argument '{name}' must have the batch size and H, W of the sketch "
                f"{tuple(like.shape)}, got {tuple(x.shape)}"
            )
        if x.device != like.device:
            raise ValueError(f"{op}: argument '{name}' must be on the sketch's device ({like.device}), got {x.device}")
        return
    factor = 2**depth
    if x.shape[2] % factor or x.shape[3] % factor or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(
            f"{op}: argument '{name}' must have H and W divisible by 2**depth = {factor}, got {tuple(x.shape)}"
        )


class SegmentationUNet(nn.Module):
    """f: sketch (B, 1, H, W) -> Nc region logits (B, Nc, H, W) (Sec. 3.2).

    segments(sketch, tau, generator): in training mode with a temperature, the straight-through
    Gumbel one-hot (B, Nc, H, W) (hard forward, soft gradient); otherwise (tau None or eval mode)
    the one-hot of the argmax, which carries no gradient.
    """

    def __init__(
        self,
        num_segments: int = 30,
        base_channels: int = 64,
        depth: int = 4,
        max_channels: int = 1024,
        norm: str = "batch",
        priority_bias: float = 0.0,
        coordinate_channels: bool = False,
    ) -> None:
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"SegmentationUNet: num_segments must be >= 1, got {num_segments}")
        self.num_segments = num_segments
        self.depth = depth
        self.coordinate_channels = coordinate_channels
        self.unet = UNet(3 if coordinate_channels else 1, num_segments, base_channels, depth, max_channels, norm)
        if priority_bias:
            # Initial logits favour low (high-priority) channels: training starts with pixels in the
            # channels that get hints most often instead of spread over all Nc (see GuidingPainterConfig).
            with torch.no_grad():
                bias = self.unet.outc.bias
                assert bias is not None  # the output conv has a bias
                bias.copy_(-priority_bias * torch.arange(num_segments, dtype=torch.float32))

    def forward(self, sketch: Tensor) -> Tensor:
        _check_image("SegmentationUNet", "sketch", sketch, 1, self.depth)
        return self.unet(with_coordinates(sketch) if self.coordinate_channels else sketch)

    def segments_from_logits(
        self, logits: Tensor, tau: float | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        if tau is None or not self.training:
            return F.one_hot(logits.argmax(dim=1), self.num_segments).permute(0, 3, 1, 2).to(logits.dtype)
        return straight_through_gumbel_softmax(logits, tau, dim=1, generator=generator, hard=True)

    def segments(self, sketch: Tensor, tau: float | None = None, generator: torch.Generator | None = None) -> Tensor:
        return self.segments_from_logits(self(sketch), tau, generator)


class ColorizationUNet(nn.Module):
    """g: [sketch X (1), hints C (3), mask M (1), segments S (Nc)] -> image (B, 3, H, W) in [-1, 1]
    (Sec. 3.4, tanh output).

    forward(sketch, hints, segments): `hints` is U = [C, M] (B, 4, H, W) from HintGenerator.
    """

    def __init__(
        self,
        num_segments: int = 30,
        base_channels: int = 64,
        depth: int = 4,
        max_channels: int = 1024,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"ColorizationUNet: num_segments must be >= 1, got {num_segments}")
        self.num_segments = num_segments
        self.depth = depth
        self.unet = UNet(1 + 3 + 1 + num_segments, 3, base_channels, depth, max_channels, norm)

    def forward(self, sketch: Tensor, hints: Tensor, segments: Tensor) -> Tensor:
        op = "ColorizationUNet"
        _check_image(op, "sketch", sketch, 1, self.depth)
        _check_image(op, "hints", hints, 4, self.depth, like=sketch)
        _check_image(op, "segments", segments, self.num_segments, self.depth, like=sketch)
        x = torch.cat([sketch, hints.to(sketch.dtype), segments.to(sketch.dtype)], dim=1)
        return torch.tanh(self.unet(x))


# --------------------------------------------------------------------------- model


@dataclasses.dataclass
class GuidingPainterConfig:
    """Architecture and schedule of a GuidingPainter; JSON-serialisable via to_dict / from_dict.

    Presets (GuidingPainterConfig.preset(name)):
      "paper": 256x256, Nc = 30, both U-Nets with the classic widths 64-128-256-512-1024
          (depth 4), batch norm, p = 0.125, tau 1 -> 0.1.
      "small": 64x64, Nc = 30, widths 16-32-64-128 (depth 3), group norm (no train/eval gap at
          the tiny CPU batch sizes), priority_bias 0.1, for CPU training and tests.
    priority_bias: the segmentation's output bias starts at -priority_bias * channel index (0: the
        paper's plain init). Measured on the bundled set (1500 steps, batch 8): with 0 the
        segmentation settled within 500 steps into regions at rarely hinted channels (15, 20, 29),
        so the colorizer almost never saw hints and PSNR barely moved with them (15.19 dB at 0 hints,
        15.72 at 16, 15.12 at 30); with 0.1 it settled on channels 0, 2 and 6 and PSNR rose
        15.78 -> 17.07 (1 hint) -> 17.47 (3+). Long GPU runs can keep the paper's init.
    coordinate_channels: the segmentation also sees the pixels' (x, y) (refcolor.nn.coordinates).
        Without them two flat areas look alike to its convolutions and get the same channel: the
        bundled run without them used 5 regions per held-out sketch after 1,000 steps, whatever the
        drawing (docs/training_log.md). Off in both presets (the paper has none).
    match_hint_means: every hinted region of g's output is shifted so that its mean colour is the
        hint's (match_hint_means below), in training and inference alike. The paper's g only sees
        the hints as inputs and may drift from them; a person who picked a colour for a region
        expects that colour there. Off in both presets (the paper has no such step).
    Loss weights live in refcolor.losses.GuidingPainterLossWeights.
    """

    num_segments: int = 30
    image_size: int = 256
    seg_base_channels: int = 64
    color_base_channels: int = 64
    depth: int = 4
    max_channels: int = 1024
    norm: str = "batch"
    stop_prob: float = 0.125
    tau_start: float = 1.0
    tau_end: float = 0.1
    tau_schedule: str = "exponential"
    backend: str = "auto"
    priority_bias: float = 0.0
    coordinate_channels: bool = False
    match_hint_means: bool = False

    PRESETS = ("paper", "small")

    def __post_init__(self) -> None:
        if self.num_segments < 1:
            raise ValueError(f"GuidingPainterConfig: num_segments must be >= 1, got {self.num_segments}")
        if self.depth < 1:
            raise ValueError(f"GuidingPainterConfig: depth must be >= 1, got {self.depth}")
        if self.image_size <= 0 or self.image_size % 2**self.depth:
            raise ValueError(
                f"GuidingPainterConfig: image_size must be a positive multiple of 2**depth = {2**self.depth}, "
                f"got {self.image_size}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"GuidingPainterConfig: norm must be one of {NORMS}, got {self.norm!r}")
        if self.tau_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(
                f"GuidingPainterConfig: tau_schedule must be one of {TEMPERATURE_SCHEDULES}, got {self.tau_schedule!r}"
            )
        if not isinstance(self.coordinate_channels, bool):
            raise ValueError(
                f"GuidingPainterConfig: coordinate_channels must be a bool, got {self.coordinate_channels!r}"
            )
        if not isinstance(self.match_hint_means, bool):
            raise ValueError(f"GuidingPainterConfig: match_hint_means must be a bool, got {self.match_hint_means!r}")
        if not 0.0 <= self.stop_prob <= 1.0:
            raise ValueError(f"GuidingPainterConfig: stop_prob must be in [0, 1], got {self.stop_prob}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GuidingPainterConfig:
        if name == "paper":
            base: dict[str, Any] = {
                "image_size": 256,
                "seg_base_channels": 64,
                "color_base_channels": 64,
                "depth": 4,
                "max_channels": 1024,
                "norm": "batch",
            }
        elif name == "small":
            base = {
                "image_size": 64,
                "seg_base_channels": 16,
                "color_base_channels": 16,
                "depth": 3,
                "max_channels": 256,
                "norm": "group",
                "priority_bias": 0.1,
            }
        else:
            raise ValueError(f"GuidingPainterConfig: unknown preset {name!r}; choose one of {cls.PRESETS}")
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuidingPainterConfig:
        if not isinstance(data, dict):
            raise TypeError(f"GuidingPainterConfig.from_dict: expected a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GuidingPainterConfig.from_dict: unknown keys {unknown}")
        return cls(**data)

    def temperature(self, step: int, total_steps: int) -> float:
        return gumbel_temperature(step, total_steps, self.tau_start, self.tau_end, self.tau_schedule)


class GuidingPainterOutput(NamedTuple):
    output: Tensor  # (B, 3, H, W) in [-1, 1]
    segments: Tensor  # (B, Nc, H, W) one-hot (straight-through in training)
    logits: Tensor  # (B, Nc, H, W) segmentation logits
    hints: Tensor  # U = [C, M] (B, 4, H, W)


class GuidingPainter(nn.Module):
    """f (SegmentationUNet), h (HintGenerator, p = stop_prob) and g (ColorizationUNet) in one module.

    forward(sketch, target, tau=..., num_hints=None, generator=None) -> GuidingPainterOutput
        training pass: Gumbel segments at temperature tau (argmax in eval mode), ground-truth
        hints of the first Nh regions (Nh drawn from Eq. 3 when None; required in eval mode).
    colorize(sketch, colors, num_hints=None) -> (B, 3, H, W): inference with the user's colours
        (B, K, 3) or (K, 3) in [-1, 1] for the first K regions.
    regions(sketch) -> (B, H, W) int64: the region index of each pixel, 0 = highest priority.
    """

    def __init__(self, config: GuidingPainterConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else GuidingPainterConfig()
        if not isinstance(config, GuidingPainterConfig):
            raise TypeError(f"GuidingPainter: config must be a GuidingPainterConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.segmentation = SegmentationUNet(
            c.num_segments, c.seg_base_channels, c.depth, c.max_channels, c.norm, c.priority_bias, c.coordinate_channels
        )
        self.hint_generator = HintGenerator(c.num_segments, stop_prob=c.stop_prob, backend=c.backend)
        self.colorization = ColorizationUNet(c.num_segments, c.color_base_channels, c.depth, c.max_channels, c.norm)

    @property
    def num_segments(self) -> int:
        return self.config.num_segments

    def forward(
        self,
        sketch: Tensor,
        target: Tensor,
        *,
        tau: float | None,
        num_hints=None,
        generator: torch.Generator | None = None,
    ) -> GuidingPainterOutput:
        _check_image("GuidingPainter", "sketch", sketch, 1, self.config.depth)
        _check_image("GuidingPainter", "target", target, 3, self.config.depth, like=sketch)
        logits = self.segmentation(sketch)
        segments = self.segmentation.segments_from_logits(logits, tau, generator)
        hints = self.hint_generator(segments, target.to(segments.dtype), num_hints=num_hints, generator=generator)
        output = self.paint(sketch, hints, segments)
        return GuidingPainterOutput(output, segments, logits, hints)

    def paint(self, sketch: Tensor, hints: Tensor, segments: Tensor) -> Tensor:
        """g on [sketch, hints U, segments], then, with config.match_hint_means, each hinted region
        shifted to its hint's mean colour: (B, 3, H, W) in [-1, 1]."""
        output = self.colorization(sketch, hints, segments)
        if self.config.match_hint_means:
            output = match_hint_means(output, hints, segments, backend=self.config.backend)
        return output

    def _argmax_segments(self, sketch: Tensor) -> Tensor:
        logits = self.segmentation(sketch)
        return F.one_hot(logits.argmax(dim=1), self.num_segments).permute(0, 3, 1, 2).to(logits.dtype)

    def regions(self, sketch: Tensor) -> Tensor:
        _check_image("GuidingPainter", "sketch", sketch, 1, self.config.depth)
        with torch.no_grad():
            return self.segmentation(sketch).argmax(dim=1)

    def colorize(self, sketch: Tensor, colors: Tensor, num_hints=None) -> Tensor:
        _check_image("GuidingPainter", "sketch", sketch, 1, self.config.depth)
        with torch.no_grad():
            segments = self._argmax_segments(sketch)
            colors = torch.as_tensor(colors, dtype=segments.dtype, device=segments.device)
            if colors.dim() not in (2, 3) or colors.shape[-1] != 3:
                raise ValueError(
                    f"GuidingPainter.colorize: argument 'colors' must have shape (K, 3) or (B, K, 3), "
                    f"got {tuple(colors.shape)}"
                )
            hints = self.hint_generator(segments, colors=colors, num_hints=num_hints)
            return self.paint(sketch, hints, segments)


MATCH_ITERATIONS = 24  # halvings of the shift's [-2, 2] bracket: 2.4e-7 wide, two float32 steps near 1


def match_hint_means(output: Tensor, hints: Tensor, segments: Tensor, *, backend: str = "auto") -> Tensor:
    """`output` (B, 3, H, W) in [-1, 1] with every hinted region shifted by one colour so that the
    mean of the result, clamped to [-1, 1], is the hint colour: clamp(output + M * s), with s per
    region and channel the solution of mean over the region of clamp(output + s) = C.

    hints: U = [C, M] (B, 4, H, W) of HintGenerator; segments: (B, Nc, H, W) one-hot (the argmax of
    inference and the straight-through pass of training; soft ones give segment-weighted means and
    a pixel-wise approximation). The shift keeps g's shading, texture and lines inside the region
    and moves only its average; against a target whose region mean is the hint (the evaluation's
    simulated hints), it removes the squared mean error of every hinted region and changes nothing
    else. Why solve rather than shift by C - mean(output): the clamp moves the mean back, most for
    the white and black regions clip art is full of (by up to 0.17 of the range [-1, 1] on held-out
    sketches, docs/training_log.md), and then the region's mean is not the colour the person chose.

    s is found by bisection (the clamped mean rises monotonically with s; s in [-2, 2] covers every
    output and hint), without autograd; a last Newton step, s + (C - f(s)) / f'(s) with f'(s) the
    region's unclamped share, changes s by less than the bracket's width but carries the implicit
    function's gradient, -df/d(output) / f', to the output and hints, so training can run through
    it. A region clamped whole (f' = 0) has no gradient to pass."""
    if hints.dim() != 4 or hints.shape[1] != 4 or hints.shape[-2:] != output.shape[-2:]:
        raise ValueError(
            f"match_hint_means: argument 'hints' must be (B, 4, H, W) like the output {tuple(output.shape)}, "
            f"got {tuple(hints.shape)}"
        )
    num_segments = segments.shape[1]
    colors, mask = hints[:, :3].to(output.dtype), hints[:, 3:].to(output.dtype)

    def region_means(image: Tensor) -> Tensor:
        # Every pixel painted with its region's mean: (B, C, H, W).
        means, _ = segment_hint_colors(segments, image.to(segments.dtype), num_segments, backend=backend)
        return means.to(output.dtype)

    with torch.no_grad():
        low, high = torch.full_like(output, -2.0), torch.full_like(output, 2.0)
        for _ in range(MATCH_ITERATIONS):
            middle = (low + high) / 2
            below = region_means((output + mask * middle).clamp(-1.0, 1.0)) < colors
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        shift = (low + high) / 2
    shifted = output + mask * shift  # with autograd: the Newton step's residual differentiates it
    with torch.no_grad():
        slope = region_means(((shifted > -1.0) & (shifted < 1.0)).to(output.dtype))
    residual = colors - region_means(shifted.clamp(-1.0, 1.0))
    moving = slope > 0
    # The safe denominator keeps a wholly clamped region's gradient finite (0, not NaN * 0).
    step = torch.where(moving, residual / torch.where(moving, slope, 1.0), 0.0)
    return (output + mask * (shift + step)).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- losses


def hint_consistency_loss(segments: Tensor, target: Tensor, *, backend: str = "auto") -> Tensor:
    """Mean-squared difference between the hint map built from ALL Nc segments and the target.

    hints = segment_hint_colors(segments, target, Nc) paints every region with its mean target
    colour; mean((hints - target)^2) is zero exactly when the target is constant inside every
    region, so the loss pushes f towards regions of one colour (official weight 5). Gradients
    reach the segments (and the target).
    """
    if not isinstance(segments, Tensor) or segments.dim() != 4:
        raise ValueError(
            f"hint_consistency_loss: argument 'segments' must be a (B, Nc, H, W) tensor, got "
            f"{tuple(segments.shape) if isinstance(segments, Tensor) else type(segments).__name__}"
        )
    hints, _ = segment_hint_colors(segments, target.to(segments.dtype), segments.shape[1], backend=backend)
    return F.mse_loss(hints, target.to(hints.dtype))


def region_usage_loss(logits: Tensor, min_regions: int) -> Tensor:
    """Hinge on the number of regions a segmentation proposes (not in the paper; refcolor's).

    logits: (B, Nc, H, W) segmentation logits. The regions counted are the argmax's, what inference
    shows the user, through a straight-through estimator: the forward pass uses the argmax one-hot,
    the backward pass the gradient of softmax(logits). For each image u_k, channel k's share of the
    image (smoothed by USAGE_EPS so that an empty channel's log stays finite), gives exp(H(u)) (H
    the entropy), the effective number of regions. The loss is the mean over images of
    max(0, log(min_regions) - H(u)): zero for an image with at least min_regions effective regions,
    so it does not compete with the hint-consistency and smoothness terms once the segmentation is
    rich enough; below that its gradient raises the logits of the channels used least.
    Why the argmax and not the training pass's Gumbel sample: while the temperature is high the
    Gumbel noise alone spreads pixels over many channels, so a hinge on the sample stays at zero
    while the argmax keeps 3 or 4 regions (the bundled run's first 580 steps with it); and not
    softmax(logits) itself, which is satisfied by every pixel hesitating between many channels.
    Why at all: the segmentation only hears about a channel through the pixels assigned to it, so
    an empty channel gets little gradient and stays empty; in the few thousand steps of a 2-core
    CPU the bundled runs without this term settled on 3-5 regions per sketch (docs/training_log.md).
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() != 4:
        raise ValueError(
            f"region_usage_loss: argument 'logits' must be a floating-point (B, Nc, H, W) tensor, got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    nc = logits.shape[1]
    if isinstance(min_regions, bool) or not isinstance(min_regions, int) or not 1 <= min_regions <= nc:
        raise ValueError(
            f"region_usage_loss: argument 'min_regions' must be an int in [1, {nc}] (Nc), got {min_regions!r}"
        )
    soft = logits.float().softmax(dim=1)
    hard = F.one_hot(soft.argmax(dim=1), nc).permute(0, 3, 1, 2).to(soft.dtype)
    segments = hard + soft - soft.detach()  # straight through: argmax forward, softmax backward
    usage = segments.mean(dim=(2, 3))  # (B, Nc)
    usage = (usage + USAGE_EPS) / (usage.sum(dim=1, keepdim=True) + nc * USAGE_EPS)
    entropy = -(usage * usage.log()).sum(dim=1)
    return (math.log(min_regions) - entropy).clamp_min(0).mean()


def smoothness_loss(logits: Tensor) -> Tensor:
    """8-neighbour L1 smoothness of segmentation logits (B, Nc, H, W) (official weight 1).

    The mean of |logits(p) - logits(q)| over channels and all pairs of 8-adjacent pixels p, q
    (horizontal, vertical and both diagonals; each unordered pair once, so the 8 directions are
    covered by symmetry). Zero for spatially constant logits.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() != 4:
        raise ValueError(
            f"smoothness_loss: argument 'logits' must be a floating-point (B, Nc, H, W) tensor, got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    pairs = [
        (logits[:, :, :, 1:] - logits[:, :, :, :-1]).abs().flatten(),  # horizontal
        (logits[:, :, 1:, :] - logits[:, :, :-1, :]).abs().flatten(),  # vertical
        (logits[:, :, 1:, 1:] - logits[:, :, :-1, :-1]).abs().flatten(),  # diagonal
        (logits[:, :, 1:, :-1] - logits[:, :, :-1, 1:]).abs().flatten(),  # anti-diagonal
    ]
    diffs = torch.cat(pairs)
    if diffs.numel() == 0:
        return logits.new_zeros(())
    return diffs.mean()


__all__ = [
    "ColorizationUNet",
    "GuidingPainter",
    "GuidingPainterConfig",
    "GuidingPainterOutput",
    "SegmentationUNet",
    "UNet",
    "gumbel_temperature",
    "hint_consistency_loss",
    "match_hint_means",
    "region_usage_loss",
    "smoothness_loss",
    "straight_through_gumbel_softmax",
]

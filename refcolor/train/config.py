"""TrainConfig: every setting of a training run, from defaults < a config file < command-line options.

The config is saved in every checkpoint. On --resume the saved config is the base: options that
only schedule the run (SCHEDULE_KEYS: more steps, other intervals, another data folder or device)
may change; anything that changes what is trained (model, sizes, optimiser, losses, seed) must match,
or resuming refuses and names the differing keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import tomllib

MODELS = ("scft", "guide", "exemplar")
PRESETS = ("small", "paper")
GAN_MODES = ("lsgan", "hinge", "bce")
FEATURE_NETWORKS = ("auto", "vgg19", "efficientnet-lite0")  # refcolor.losses.FEATURE_NETWORK_CHOICES

# May differ between a run and its resumption.
SCHEDULE_KEYS = frozenset(
    {
        "steps",
        "data",
        "out",
        "device",
        "num_workers",
        "checkpoint_every",
        "sample_every",
        "log_every",
        "keep_last",
        "num_samples",
        "tensorboard",
        "progress",
        # A change is accepted only while the learning rates it gives up to the resumed step are
        # the ones the run trained with (Trainer checks it with lr_schedule_change).
        "lr_decay_start",
    }
)


@dataclass
class TrainConfig:
    """Settings of `refcolor train` (and refcolor.train.Trainer). Loss weights not given in
    `loss_weights` take the model's published defaults (refcolor.losses.SCFTLossWeights,
    GuidingPainterLossWeights); `model_overrides` sets fields of the model config on top of the preset."""

    # "scft" (Lee et al. 2020), "guide" (GuidingPainter, Cho et al. 2022) or "exemplar" (Xu et al.
    # 2020; its stages and their learning rates are in ExemplarColorizerConfig, not lr_generator)
    model: str = "scft"
    preset: str = "small"  # model preset: "small" (CPU) or "paper"
    image_size: int | None = None  # training resolution; None: the preset's
    model_overrides: dict = field(default_factory=dict)
    data: str | None = None  # image folder; None: the bundled sample set
    out: str = "runs/refcolor"  # run directory: checkpoints, samples, logs, model.safetensors
    batch_size: int = 8  # per process
    steps: int = 1000  # total optimiser steps of the run
    # guide: steps over which the Gumbel temperature anneals (tau_start -> tau_end). None: the run's
    # `steps` when it starts; then saved and frozen, so a resume with more --steps continues the
    # same schedule instead of jumping back to a warmer temperature.
    temperature_steps: int | None = None
    seed: int = 0
    lr_generator: float = 1e-4
    lr_discriminator: float = 2e-4
    # Both learning rates constant until this step, then linearly down to 0 at `steps` (pix2pix's
    # schedule: Isola et al. 2017, whose generator GuidingPainter and SCFT build on). None: constant.
    lr_decay_start: int | None = None
    betas: tuple[float, float] = (0.5, 0.999)
    gan_mode: str = "lsgan"
    discriminator_channels: int | None = None  # None: 64 (pix2pix) for paper, 32 for small
    discriminator_layers: int = 3
    spectral_norm: bool = False
    loss_weights: dict = field(default_factory=dict)
    triplet_margin: float = 12.0
    triplet_negatives: int = 1
    # guide: the region-usage loss (weight loss_weights.usage, 0 by default) acts on images whose
    # segmentation spreads over fewer than this many regions (refcolor.models.guiding_painter).
    usage_regions: int = 12
    vgg_weights: str | None = None  # torchvision vgg19 file or URL; None: $REFCOLOR_VGG19_WEIGHTS / hub cache
    download_vgg: bool = False  # allow fetching the VGG19 weights from download.pytorch.org
    # network of the perceptual and style losses: "vgg19", "efficientnet-lite0" (the extra
    # refcolor[features]) or "auto" (VGG19 when its weights are found, else EfficientNet-Lite0 when
    # installed, else both terms off with one warning); config.json's "resolved" says which ran.
    # exemplar: its model config's frozen encoder serves the losses; this must be "auto" or name it.
    feature_network: str = "auto"
    amp: str = "auto"  # mixed precision: "auto" (on for CUDA), "on", "off"
    device: str = "auto"  # "auto": cuda (the local rank's GPU under torchrun) when available, else cpu
    backend: str = "auto"  # backend of the fused ops (refcolor.backends): "auto", "reference", ...
    num_workers: int | None = None  # data-loader workers; None: 0 on CPU, min(8, cores) with CUDA
    checkpoint_every: int = 500
    sample_every: int = 250
    log_every: int = 10
    keep_last: int = 3
    num_samples: int = 4  # rows of the sample grids
    tensorboard: bool = True  # log to TensorBoard when it is installed
    progress: str = "auto"  # progress bar: "auto" (when stderr is a terminal), "bar", "lines", "off"
    # A fine-tune: the generator starts from this model (a file, run directory or checkpoint, or
    # "bundled" for the bundled weights of `model`), refcolor.train.initial_weights says how.
    init_weights: str | None = None
    init_modules: list[str] | None = None  # with init_weights: copy only these top-level submodules

    def __post_init__(self) -> None:
        # A list when read from JSON/TOML; validate() checks the length.
        self.betas = cast("tuple[float, float]", tuple(self.betas))
        self.validate()

    def validate(self) -> None:
        def bad(name: str, expected: str) -> None:
            raise ValueError(f"train config: '{name}' must be {expected}, got {getattr(self, name)!r}")

        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                bad(name, f"an int >= {minimum}")

        if self.model not in MODELS:
            bad("model", f"one of {MODELS}")
        if self.preset not in PRESETS:
            bad("preset", f"one of {PRESETS}")
        if self.image_size is not None:
            positive_int("image_size")
        for name in ("batch_size", "steps", "checkpoint_every", "sample_every", "log_every", "keep_last"):
            positive_int(name)
        positive_int("num_samples", 0)
        positive_int("triplet_negatives")
        positive_int("usage_regions")
        if self.init_weights is not None and (not isinstance(self.init_weights, str) or not self.init_weights):
            bad("init_weights", "a model path, run directory or 'bundled'")
        if self.init_modules is not None and (
            not isinstance(self.init_modules, (list, tuple))
            or not self.init_modules
            or not all(isinstance(m, str) and m for m in self.init_modules)
        ):
            bad("init_modules", "a non-empty list of submodule names")
        if self.discriminator_channels is not None:
            positive_int("discriminator_channels")
        if self.temperature_steps is not None:
            positive_int("temperature_steps")
        if self.lr_decay_start is not None:
            positive_int("lr_decay_start", 0)
            if self.lr_decay_start >= self.steps:
                bad("lr_decay_start", f"an int below steps ({self.steps}) or None")
        positive_int("discriminator_layers")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", "an int >= 0")
        if self.num_workers is not None:
            positive_int("num_workers", 0)
        for name in ("lr_generator", "lr_discriminator"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                bad(name, "a number > 0")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            bad("betas", "two numbers in [0, 1)")
        if self.gan_mode not in GAN_MODES:
            bad("gan_mode", f"one of {GAN_MODES}")
        if self.feature_network not in FEATURE_NETWORKS:
            bad("feature_network", f"one of {FEATURE_NETWORKS}")
        if self.amp not in ("auto", "on", "off"):
            bad("amp", "'auto', 'on' or 'off'")
        if self.progress not in ("auto", "bar", "lines", "off"):
            bad("progress", "'auto', 'bar', 'lines' or 'off'")
        if not isinstance(self.loss_weights, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in self.loss_weights.values()
        ):
            bad("loss_weights", "a table of names to numbers >= 0")
        if not isinstance(self.model_overrides, dict):
            bad("model_overrides", "a table of model config fields")
        if not isinstance(self.triplet_margin, (int, float)) or self.triplet_margin < 0:
            bad("triplet_margin", "a number >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; known keys: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"{source}: {err}") from None

    def lr_factor(self, step: int) -> float:
        """What both learning rates are multiplied by at `step` (0-based): 1 before lr_decay_start,
        then falling linearly so that the run's last step takes 1 / (steps - lr_decay_start)."""
        if self.lr_decay_start is None or step < self.lr_decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - self.lr_decay_start) / (self.steps - self.lr_decay_start))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def fix_schedules(self, saved: dict[str, Any] | None = None) -> TrainConfig:
        """This config with the run-long schedules fixed: temperature_steps taken from the run being
        resumed (`saved`, its config; a run saved before the key existed annealed over its `steps`)
        or, for a new run, from `steps`. Only GuidingPainter has such a schedule."""
        if self.model != "guide" or self.temperature_steps is not None:
            return self
        if saved is not None:
            return self.replace(temperature_steps=saved.get("temperature_steps") or saved["steps"])
        return self.replace(temperature_steps=self.steps)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON (.json) or TOML (any other suffix) file of TrainConfig keys, as a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(
            f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    return data


def lr_schedule_change(previous: TrainConfig, given: TrainConfig, step: int) -> str | None:
    """Why `given` cannot resume a run trained with `previous` up to `step`: its learning-rate
    schedule differs on some step already taken (None when they agree). A decay that has not begun
    may be added, moved or dropped; one that has begun fixes lr_decay_start and steps."""
    for config in (previous, given):
        started = config.lr_decay_start is not None and config.lr_decay_start < step
        if started and (previous.lr_decay_start, previous.steps) != (given.lr_decay_start, given.steps):
            return (
                f"the learning-rate decay had begun by step {step}: lr_decay_start and steps must stay "
                f"{previous.lr_decay_start!r} and {previous.steps!r} (saved), got "
                f"{given.lr_decay_start!r} and {given.steps!r}"
            )
    return None


def frozen_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Keys outside SCHEDULE_KEYS whose values differ (the run cannot be resumed with them)."""
    keys = (set(saved) | set(given)) - SCHEDULE_KEYS
    return sorted(k for k in keys if saved.get(k) != given.get(k))


__all__ = [
    "MODELS",
    "PRESETS",
    "SCHEDULE_KEYS",
    "TrainConfig",
    "frozen_differences",
    "lr_schedule_change",
    "read_config_file",
]

"""Task: the model-specific half of a training step; refcolor.train.Trainer runs the rest (the
discriminator and generator updates, mixed precision, DDP, checkpoints, logs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from refcolor.models.discriminator import ConditionalPatchDiscriminator
from refcolor.models.registry import build_model, describe, model_config
from refcolor.train.config import TrainConfig


class Task:
    """Builds the generator and the sketch-conditioned PatchGAN discriminator of `config.model`.

    Subclasses define:
        prepare(images, rng) -> data: the training inputs from a batch of colour images
            (B, 3, S, S) in [0, 1] on the device; model-range tensors ([-1, 1]), always with
            "sketch" (B, 1, S, S) and "target" (B, 3, S, S).
        forward(generator, data, step, rng) -> out: the generator pass, with "fake" (B, 3, S, S).
        losses(data, out, rng) -> {name: unweighted scalar}; the trainer adds "adversarial".
        sample_columns(generator, data) -> [(name, images in [0, 1])]: the sample grid, eval mode.
    `loss_defaults` holds the published weights; TrainConfig.loss_weights overrides them.
    """

    kind: str = ""
    loss_defaults: Any = None
    find_unused_parameters = False  # DDP: True when some steps leave generator parameters unused

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        self.model_config = resolve_model_config(config)
        self.generator = build_model(self.kind, self.model_config).to(device)
        d_channels = config.discriminator_channels or (64 if config.preset == "paper" else 32)
        self.discriminator = ConditionalPatchDiscriminator(
            3, 1, d_channels, config.discriminator_layers, config.spectral_norm, norm="instance"
        ).to(device)
        defaults = dataclasses.asdict(self.loss_defaults)
        unknown = sorted(set(config.loss_weights) - set(defaults))
        if unknown:
            raise ValueError(
                f"train config: unknown loss_weights {unknown} for model {self.kind!r}; known: {sorted(defaults)}"
            )
        self.weights = {**defaults, **{k: float(v) for k, v in config.loss_weights.items()}}
        self.set_backend(config.backend)

    @property
    def image_size(self) -> int:
        return self.model_config.image_size

    def metadata(self) -> dict:
        """What inference needs to rebuild the generator (stored with its weights)."""
        return describe(self.kind, self.model_config)

    def set_backend(self, backend: str) -> None:
        """Backend of the fused ops at run time (not stored in the model config: inference picks its own)."""

    def generator_lr(self, step: int) -> float:
        """The generator's learning rate at `step` (a task with stages may change it)."""
        return self.config.lr_generator

    def run_record(self) -> dict:
        """What the task resolved at construction, recorded in the run's config.json (not a setting)."""
        return {"loss_weights": dict(self.weights)}

    # subclass API ---------------------------------------------------------------------------
    def prepare(self, images: Tensor, rng: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, generator: nn.Module, data: dict, step: int, rng: torch.Generator) -> dict:
        raise NotImplementedError

    def losses(self, data: dict, out: dict, rng: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def sample_columns(self, generator: nn.Module, data: dict) -> list[tuple[str, Tensor]]:
        raise NotImplementedError


def resolve_model_config(config: TrainConfig):
    """The model config of a run: the preset, then model_overrides, then image_size."""
    overrides = dict(config.model_overrides)
    if config.image_size is not None:
        overrides["image_size"] = config.image_size
    return model_config(config.model, config.preset, **overrides)


__all__ = ["Task", "resolve_model_config"]

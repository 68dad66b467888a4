"""SCFT training (Lee et al., CVPR 2020): augmented-self reference triples, the generator with
SCFT's projected features for the triplet loss, and the losses of Eq. 11 (L1 30, adversarial 1,
triplet 1 with margin 12, perceptual 0.01 and style 50 on VGG19 relu{1..5}_1, or on EfficientNet-Lite0
when VGG19's weights are absent: TrainConfig.feature_network, refcolor.losses.resolve_feature_loss).

With the model config's strong_warp_probability p > 0 (issue 27), each training reference is, with
probability p, the target warped by WARPS["strong"] (flip, rotation, scale, shift composed with a
TPS) instead of the mild TPS; its grid replaces the mild one, so the triplet loss still knows
every cell's true reference cell. With frozen_features the frozen network's ImageNet weights are
loaded when the run starts (a resumed run's checkpoint holds them too)."""

from __future__ import annotations

import warnings
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.data.augmented_self_reference import AugmentedSelfReference
from refcolor.images import from_model_range
from refcolor.losses import SCFTLossWeights, resolve_feature_loss, scft_triplet_loss
from refcolor.models.scft_colorizer import SCFTColorizer
from refcolor.models.vgg import WeightsUnavailableError
from refcolor.ops.tps_correspondence import tps_correspondence
from refcolor.train.tasks.base import Task


class VGGUnavailableWarning(UserWarning):
    """No pretrained feature network (neither VGG19 weights nor the EfficientNet-Lite0 extra): the
    perceptual and style terms are switched off for this run."""


class SCFTTask(Task):
    kind = "scft"
    loss_defaults = SCFTLossWeights()

    def __init__(self, config, device):
        super().__init__(config, device)
        self.augment = AugmentedSelfReference(backend=config.backend)
        self.strong_augment = AugmentedSelfReference.with_warp("strong", backend=config.backend)
        if self.model_config.frozen_features != "none":
            try:
                cast(SCFTColorizer, self.generator).load_frozen_features()
            except WeightsUnavailableError as err:
                raise ValueError(
                    f"train config: frozen_features {self.model_config.frozen_features!r} needs its ImageNet "
                    f"weights: {err}"
                ) from None
            self.generator.to(device)
        self.feature_loss, self.feature_network = None, None
        if self.weights["perceptual"] > 0 or self.weights["style"] > 0:
            try:
                loss, self.feature_network, why = resolve_feature_loss(
                    config.feature_network, vgg_weights=config.vgg_weights, download_vgg=config.download_vgg
                )
            except WeightsUnavailableError as err:  # an explicit choice whose weights are missing
                raise ValueError(
                    f"train config: feature_network {config.feature_network!r} is unavailable: {err}"
                ) from None
            if loss is None:
                warnings.warn(
                    f"perceptual and style losses are off for this run: {why}", VGGUnavailableWarning, stacklevel=2
                )
                self.weights["perceptual"] = self.weights["style"] = 0.0
            else:
                self.feature_loss = loss.to(device)

    def run_record(self) -> dict:
        """What the run resolved (written to config.json): the feature network and the loss weights in effect."""
        return {"feature_network": self.feature_network, "loss_weights": dict(self.weights)}

    def set_backend(self, backend: str) -> None:
        cast(SCFTColorizer, self.generator).scft.backend = backend

    def prepare(self, images: Tensor, rng: torch.Generator) -> dict[str, Tensor]:
        with torch.no_grad():
            triple = self.augment(images, rng)
            reference, grid = triple["reference"], triple["grid"]
            p = self.model_config.strong_warp_probability
            if p > 0:  # drawn after the mild triple: runs without it keep their random streams
                strong, strong_grid = self.strong_augment.distort(triple["target"], rng)
                B = images.shape[0]
                pick = torch.rand(B, generator=rng, device=rng.device).to(images.device) < p
                reference = torch.where(pick.view(B, 1, 1, 1), strong, reference)
                grid = torch.where(pick.view(B, 1, 1, 1), strong_grid, grid)
        return {
            "sketch": triple["sketch"] * 2 - 1,
            "reference": reference * 2 - 1,
            "target": triple["target"] * 2 - 1,
            "grid": grid,
        }

    def forward(self, generator: nn.Module, data: dict, step: int, rng: torch.Generator) -> dict:
        out = generator(data["sketch"], data["reference"], return_triplet=True)
        return {
            "fake": out.image,
            "queries": out.queries,
            "keys": out.keys,
            "feature_size": out.feature_size,
            "reference_feature_size": out.reference_feature_size,
        }

    def losses(self, data: dict, out: dict, rng: torch.Generator) -> dict[str, Tensor]:
        fake, target = out["fake"], data["target"]
        terms = {"l1": F.l1_loss(fake.float(), target.float())}
        if self.weights["triplet"] > 0:
            # The warp grid says which reference cell shows each sketch cell: the positive key.
            index, valid = tps_correspondence(data["grid"], out["feature_size"], out["reference_feature_size"])
            terms["triplet"] = scft_triplet_loss(
                out["queries"],
                out["keys"],
                index,
                valid,
                margin=self.config.triplet_margin,
                num_negatives=self.config.triplet_negatives,
                generator=rng,
            )
        if self.feature_loss is not None:
            terms["perceptual"], terms["style"] = self.feature_loss(fake, target)
        return terms

    @torch.no_grad()
    def sample_columns(self, generator: nn.Module, data: dict) -> list[tuple[str, Tensor]]:
        output = generator(data["sketch"], data["reference"])
        return [
            ("sketch", from_model_range(data["sketch"])),
            ("reference", from_model_range(data["reference"])),
            ("output", from_model_range(output)),
            ("target", from_model_range(data["target"])),
        ]


__all__ = ["SCFTTask", "VGGUnavailableWarning"]

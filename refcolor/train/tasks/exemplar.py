"""Exemplar colorization training (Xu et al., CVPR 2020) in three stages (ExemplarColorizerConfig's
recipe: transfer_steps, colorization_steps, then end to end), each with its own Adam learning rate
(generator_lr).

Per batch of colour images (the order of the random draws is fixed, so resuming is exact):
  1. the target Y: the colour jitter of AugmentedSelfReference (its sample_jitter and appearance);
  2. the exemplar: with probability self_exemplar_probability Y itself warped by a random thin-plate
     spline (AugmentedSelfReference.distort, the fused tps_warp): an augmented-self exemplar;
     otherwise the next image's Y in the batch (another image's colours; a batch of one has only
     self exemplars). With strong_warp_probability > 0 that share of the self exemplars is warped
     by WARPS["strong"] instead (its affine draw composed with the TPS: flips, rotations, zooms,
     shifts), drawn only then, so runs without the option keep their random streams;
  3. the hint mask M of refcolor.models.exemplar_masking (each pixel kept with probability
     1 - mask_probability; the whole T_ab for a sample with probability full_hint_probability).
The model sees Y's luminance L and the exemplar; losses (refcolor.exemplar_losses): the transfer terms
on Lab(L, T_ab) in the transfer and end-to-end stages, the weighted smooth L1 of the colorization
sub-net's a*b* against Y's in the colorization and end-to-end stages, on the self-exemplar samples
only (with another image's exemplar the net cannot know Y's colours: trained towards them anyway, it
learnt to wash the exemplar's colours out, docs/training_log.md). No discriminator (adversarial
weight 0: the trainer skips it)."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from refcolor.data.augmented_self_reference import AugmentedSelfReference
from refcolor.exemplar_losses import ExemplarLossWeights, transfer_losses, weighted_smooth_l1
from refcolor.lab import gray_rgb, normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models.exemplar_colorizer import ExemplarColorizer
from refcolor.models.exemplar_masking import random_hint_mask
from refcolor.models.vgg import WeightsUnavailableError
from refcolor.train.config import TrainConfig
from refcolor.train.tasks.base import Task


class ExemplarTask(Task):
    kind = "exemplar"
    loss_defaults = ExemplarLossWeights()
    find_unused_parameters = True  # each stage trains part of the generator (DDP must not wait for the rest)

    def __init__(self, config, device):
        super().__init__(config, device)
        encoder = self.model_config.encoder
        default_lr = TrainConfig.__dataclass_fields__["lr_generator"].default
        if config.lr_generator != default_lr:  # a --lr-g that would silently do nothing
            raise ValueError(
                "train config: 'lr_generator' does not apply to model 'exemplar' (its stages' rates are the "
                f"model_overrides lr_transfer, lr_colorization, lr_end_to_end), got {config.lr_generator!r}"
            )
        if config.feature_network not in ("auto", encoder):
            raise ValueError(
                f"train config: feature_network must be 'auto' or the exemplar encoder {encoder!r} "
                f"(the losses use the model's own frozen encoder), got {config.feature_network!r}"
            )
        try:
            self.model.transfer.encoder.load_pretrained(
                vgg_weights=config.vgg_weights, download_vgg=config.download_vgg
            )
        except WeightsUnavailableError as err:
            raise ValueError(
                f"train config: the exemplar encoder {encoder!r} needs its ImageNet weights: {err}"
            ) from None
        self.model.transfer.encoder.to(device)
        self.augment = AugmentedSelfReference(backend=config.backend)
        self.strong_augment = AugmentedSelfReference.with_warp("strong", backend=config.backend)

    @property
    def model(self) -> ExemplarColorizer:
        return cast(ExemplarColorizer, self.generator)

    def generator_lr(self, step: int) -> float:
        return self.model_config.learning_rate(step)

    def run_record(self) -> dict:
        return {"feature_network": self.model_config.encoder, "loss_weights": dict(self.weights)}

    def prepare(self, images: Tensor, rng: torch.Generator) -> dict[str, Tensor]:
        B, _, H, W = images.shape
        with torch.no_grad():
            target = self.augment.appearance(images, self.augment.sample_jitter(B, generator=rng))
            warped, _ = self.augment.distort(target, rng)
            draw = torch.rand(B, generator=rng, device=rng.device).to(images.device)
            if self.model_config.strong_warp_probability > 0:
                strong, _ = self.strong_augment.distort(target, rng)
                pick = torch.rand(B, generator=rng, device=rng.device).to(images.device)
                pick = pick < self.model_config.strong_warp_probability
                warped = torch.where(pick.view(B, 1, 1, 1), strong, warped)
            own = (draw < self.model_config.self_exemplar_probability) | (B == 1)
            exemplar = torch.where(own.view(B, 1, 1, 1), warped, target.roll(1, dims=0))
            luminance, ab = rgb_to_normalized_lab(target)
            mask = random_hint_mask(
                (B, H, W),
                self.model_config.mask_probability,
                full_hint_probability=self.model_config.full_hint_probability,
                generator=rng,
                device=images.device,
            )
        return {
            "sketch": luminance,  # the trainer's conditioning input (L_n is in [-1, 1])
            "target": target * 2 - 1,
            "target_rgb": target,
            "luminance": luminance,
            "ab": ab,
            "exemplar": exemplar,
            "self": own.float(),
            "mask": mask,
        }

    def forward(self, generator: nn.Module, data: dict, step: int, rng: torch.Generator) -> dict:
        stage = self.model_config.stage(step)
        out = generator(data["luminance"], data["exemplar"], data["mask"], stage=stage)
        final = out.ab if out.ab is not None else out.transfer.t_ab
        fake = normalized_lab_to_rgb(data["luminance"], final)
        return {"fake": fake * 2 - 1, "stage": stage, "model_output": out}

    def losses(self, data: dict, out: dict, rng: torch.Generator) -> dict[str, Tensor]:
        result, stage = out["model_output"], out["stage"]
        terms: dict[str, Tensor] = {}
        if stage != "colorization":
            encoder = self.model.transfer.encoder
            transfer_image = normalized_lab_to_rgb(data["luminance"], result.transfer.t_ab)
            with torch.no_grad():
                target_features = encoder(data["target_rgb"])
            terms.update(
                transfer_losses(
                    encoder(transfer_image),
                    transfer_image,
                    data["target_rgb"],
                    target_features,
                    result.transfer.stylised,
                    result.transfer.style_features,
                    data["self"],
                )
            )
        if stage != "transfer":
            terms["colorization"] = weighted_smooth_l1(
                result.ab, data["ab"], result.mask, self.model_config.hint_lambda, sample_weight=data["self"]
            )
        return terms

    @torch.no_grad()
    def sample_columns(self, generator: nn.Module, data: dict) -> list[tuple[str, Tensor]]:
        luminance = data["luminance"]
        out = generator(luminance, data["exemplar"])  # the inference path: lattice hints
        return [
            ("gray", gray_rgb(luminance)),
            ("exemplar", data["exemplar"]),
            ("transfer", normalized_lab_to_rgb(luminance, out.transfer.t_ab)),
            ("output", normalized_lab_to_rgb(luminance, out.ab)),
            ("target", data["target_rgb"]),
        ]


__all__ = ["ExemplarTask"]

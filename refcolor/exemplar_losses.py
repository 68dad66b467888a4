"""Losses of the exemplar colorizer (Xu et al., CVPR 2020; the slides in shared/papers).

Transfer sub-net, on the transfer output image O = Lab(L, T_ab) and the frozen encoder's four levels
phi_1..phi_4 (refcolor.models.exemplar_encoder; the paper's VGG19 conv1..conv5 layers mapped to the
levels the encoder has):
- reconstruction (0.8): mean squared error of O against the colour target Y (sRGB in [0, 1]);
- perceptual (0.2): mean squared error of phi_4(O) against phi_4(Y);
  both only over samples whose exemplar is their own augmented copy (`self_weight`): with another
  image's exemplar the target's colours are not what the transfer should produce;
- content (1): mean squared error of phi_4(O) against t_4, the progressive AdaIN output of the
  deepest level (Huang & Belongie's content loss: the decoder must invert the stylised features);
- style (1e6): sum over levels l of w_l * mean squared error of the Gram matrices (F F^T / (C H W))
  of phi_l(O) and of the exemplar's phi_l; w = 1.0, 0.75, 0.2, 0.2 for levels 1-4 (the slides:
  conv1_1 1.0, conv2_1 0.75, conv3_1..conv5_1 0.2; the encoder stops at relu4_1, so conv5_1's term
  has no layer and is dropped; for EfficientNet-Lite0 the levels are stem, stage2, stage3, stage4).
Colorization sub-net: the slides' weighted smooth L1, L_h((1 + lambda M) F(x), (1 + lambda M) y),
lambda 10, on normalised a*b* (refcolor.lab), over the self-exemplar samples only, as reconstruction.
Scaling both sides inside the Huber loss is not a weighted loss: a hint pixel weighs (1 + lambda)^2
in the quadratic zone and (1 + lambda) in the linear zone (beta = 1, PyTorch's default, as the
slides give none).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.losses import gram_matrix

STYLE_LEVEL_WEIGHTS = (1.0, 0.75, 0.2, 0.2)


@dataclasses.dataclass
class ExemplarLossWeights:
    """The slides' weights: transfer reconstruction 0.8, perceptual 0.2, content 1, style 1e6; the
    colorization sub-net's weighted smooth L1 1 (its lambda is ExemplarColorizerConfig.hint_lambda).
    No adversarial term in the paper: 0 (the shared trainer then skips its discriminator)."""

    reconstruction: float = 0.8
    perceptual: float = 0.2
    content: float = 1.0
    style: float = 1e6
    colorization: float = 1.0
    adversarial: float = 0.0


def _per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)


def _weighted_mean(values: Tensor, weight: Tensor) -> Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1)


def transfer_losses(
    output_features: list[Tensor],
    output: Tensor,
    target: Tensor,
    target_features: list[Tensor],
    stylised: list[Tensor],
    style_features: list[Tensor],
    self_weight: Tensor,
) -> dict[str, Tensor]:
    """The four transfer terms (module docstring), unweighted.

    output, target: (B, 3, H, W) sRGB in [0, 1]; *_features: the encoder's four levels of the
    output, of the target (no gradient needed) and of the exemplar; stylised: t_1..t_4;
    self_weight: (B,) 1 for a self exemplar, 0 for another image's."""
    weight = self_weight.float()
    style = torch.stack(
        [
            w * F.mse_loss(gram_matrix(o), gram_matrix(s))
            for w, o, s in zip(STYLE_LEVEL_WEIGHTS, output_features, style_features, strict=True)
        ]
    ).sum()
    return {
        "reconstruction": _weighted_mean(_per_sample_mse(output, target), weight),
        "perceptual": _weighted_mean(_per_sample_mse(output_features[-1], target_features[-1]), weight),
        "content": F.mse_loss(output_features[-1].float(), stylised[-1].float()),
        "style": style,
    }


def weighted_smooth_l1(
    prediction: Tensor, target: Tensor, mask: Tensor, hint_lambda: float = 10.0, sample_weight: Tensor | None = None
) -> Tensor:
    """L_h((1 + lambda M) * prediction, (1 + lambda M) * target), mean over all entries; mask (B, 1, H, W)
    broadcasts over the a*b* channels. sample_weight (B,): the mean over the samples weighted by it
    (the colorization loss passes 1 for self exemplars, 0 for another image's: like the transfer's
    reconstruction term, the target's colours are what the output should be only when the
    exemplar is the target's own copy)."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"weighted_smooth_l1: 'prediction' and 'target' must have one shape, got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    scale = 1 + hint_lambda * mask.float()
    losses = F.smooth_l1_loss(scale * prediction.float(), scale * target.float(), reduction="none")
    per_sample = losses.flatten(1).mean(dim=1)  # equal sizes: their plain mean is the mean over all entries
    weight = torch.ones_like(per_sample) if sample_weight is None else sample_weight.float()
    return _weighted_mean(per_sample, weight)


__all__ = ["STYLE_LEVEL_WEIGHTS", "ExemplarLossWeights", "transfer_losses", "weighted_smooth_l1"]

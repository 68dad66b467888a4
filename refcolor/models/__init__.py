"""Networks of refcolor: the colorizers (SCFT, GuidingPainter, exemplar), the loss networks (VGG19,
EfficientNet-Lite0) and the PatchGAN discriminators."""

from refcolor.models.discriminator import ConditionalPatchDiscriminator, PatchDiscriminator
from refcolor.models.efficientnet_lite import EfficientNetLite0, EfficientNetLite0Features
from refcolor.models.exemplar_colorizer import ExemplarColorizer, ExemplarColorizerConfig, ExemplarOutput
from refcolor.models.guiding_painter import (
    ColorizationUNet,
    GuidingPainter,
    GuidingPainterConfig,
    GuidingPainterOutput,
    SegmentationUNet,
    gumbel_temperature,
    hint_consistency_loss,
    smoothness_loss,
    straight_through_gumbel_softmax,
)
from refcolor.models.scft_colorizer import SCFTColorizer, SCFTColorizerConfig, SCFTColorizerOutput
from refcolor.models.vgg import PERCEPTUAL_LAYERS, STYLE_LAYERS, VGG19Features, WeightsUnavailableError

__all__ = [
    "PERCEPTUAL_LAYERS",
    "STYLE_LAYERS",
    "ColorizationUNet",
    "ConditionalPatchDiscriminator",
    "EfficientNetLite0",
    "EfficientNetLite0Features",
    "ExemplarColorizer",
    "ExemplarColorizerConfig",
    "ExemplarOutput",
    "GuidingPainter",
    "GuidingPainterConfig",
    "GuidingPainterOutput",
    "PatchDiscriminator",
    "SCFTColorizer",
    "SCFTColorizerConfig",
    "SCFTColorizerOutput",
    "SegmentationUNet",
    "VGG19Features",
    "WeightsUnavailableError",
    "gumbel_temperature",
    "hint_consistency_loss",
    "smoothness_loss",
    "straight_through_gumbel_softmax",
]

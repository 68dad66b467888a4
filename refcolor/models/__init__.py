"""Networks of refcolor: the VGG19 loss network and the PatchGAN discriminators."""
from refcolor.models.discriminator import (
    ConditionalPatchDiscriminator,
    PatchDiscriminator,
)
from refcolor.models.vgg import (
    PERCEPTUAL_LAYERS,
    STYLE_LAYERS,
    VGG19Features,
    WeightsUnavailableError,
)

__all__ = [
    "PERCEPTUAL_LAYERS",
    "STYLE_LAYERS",
    "ConditionalPatchDiscriminator",
    "PatchDiscriminator",
    "VGG19Features",
    "WeightsUnavailableError",
]

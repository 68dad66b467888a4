"""PatchGAN discriminators (Isola et al. 2017, pix2pix "NLayerDiscriminator" layout).

With num_layers=3 each output logit sees a 70x70 input patch: 4x4 convs, stride 2 for the first
num_layers convs and stride 1 for the last two, LeakyReLU(0.2), no norm on the first layer, one
logit channel out. A 256x256 input gives a 30x30 logits map.

SCFT (Lee et al. 2020, Eq. 8) and GuidingPainter condition the discriminator on the sketch:
ConditionalPatchDiscriminator concatenates [image, sketch] on channels (in_channels = 3 + 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_NORMS = ("instance", "batch", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    """(B, in_channels, H, W) -> (B, 1, H', W') unnormalised logits, one per patch.

    Args:
        in_channels: input channels (4 for [RGB image, sketch]).
        base_channels: width of the first conv; doubles per layer up to 8x.
        num_layers: stride-2 convs (3: the 70x70 PatchGAN).
        spectral_norm: wrap every conv in spectral normalisation (Miyato et al. 2018); usually
            paired with norm="none" and the hinge loss.
        norm: "instance" (pix2pix default), "batch" or "none".
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 64,
        num_layers: int = 3,
        spectral_norm: bool = False,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"PatchDiscriminator: norm must be one of {_NORMS}, got {norm!r}")
        if in_channels < 1 or base_channels < 1 or num_layers < 1:
            raise ValueError("PatchDiscriminator: in_channels, base_channels and num_layers must be >= 1")
        # A conv followed by a mean-subtracting norm makes its bias redundant.
        bias = norm == "none"

        def conv(cin: int, cout: int, stride: int, with_bias: bool = bias) -> nn.Module:
            layer = nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=1, bias=with_bias)
            nn.init.normal_(layer.weight, 0.0, 0.02)  # pix2pix initialisation
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        layers: list[nn.Module] = [conv(in_channels, base_channels, 2, True), nn.LeakyReLU(0.2)]
        channels = base_channels
        for n in range(1, num_layers + 1):
            out_channels = base_channels * min(2**n, 8)
            stride = 2 if n < num_layers else 1  # the last of these keeps the resolution
            layers += [conv(channels, out_channels, stride), _norm_layer(norm, out_channels), nn.LeakyReLU(0.2)]
            channels = out_channels
        layers.append(conv(channels, 1, 1, True))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ConditionalPatchDiscriminator(nn.Module):
    """PatchGAN on [image, condition] concatenated on channels (the condition is the sketch).

    forward(image (B, image_channels, H, W), condition (B, condition_channels, H, W)) -> logits.
    """

    def __init__(
        self,
        image_channels: int = 3,
        condition_channels: int = 1,
        base_channels: int = 64,
        num_layers: int = 3,
        spectral_norm: bool = False,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.image_channels = image_channels
        self.condition_channels = condition_channels
        self.net = PatchDiscriminator(
            image_channels + condition_channels, base_channels, num_layers, spectral_norm, norm
        )

    def forward(self, image: Tensor, condition: Tensor) -> Tensor:
        if image.shape[1] != self.image_channels or condition.shape[1] != self.condition_channels:
            raise ValueError(
                f"ConditionalPatchDiscriminator: expected {self.image_channels} image and "
                f"{self.condition_channels} condition channels, got {image.shape[1]} and {condition.shape[1]}"
            )
        if image.shape[0] != condition.shape[0] or image.shape[2:] != condition.shape[2:]:
            raise ValueError(
                "ConditionalPatchDiscriminator: image and condition must share batch and spatial size, "
                f"got {tuple(image.shape)} and {tuple(condition.shape)}"
            )
        return self.net(torch.cat([image, condition.to(image.dtype)], dim=1))


__all__ = ["ConditionalPatchDiscriminator", "PatchDiscriminator"]

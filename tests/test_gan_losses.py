"""Gram matrix, perceptual and style losses, VGGLoss, GAN losses on known logits, loss weights,
and the PatchGAN discriminators (output shape, spectral norm, gradients)."""

from __future__ import annotations

import pytest
import torch

from refcolor.losses import (
    GuidingPainterLossWeights,
    SCFTLossWeights,
    VGGLoss,
    gan_loss,
    gram_matrix,
    perceptual_loss,
    style_loss,
)
from refcolor.models import (
    ConditionalPatchDiscriminator,
    PatchDiscriminator,
    VGG19Features,
)

LAYERS = ("relu1_1", "relu2_1")


def _features(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"relu1_1": torch.rand(2, 4, 6, 5, generator=g), "relu2_1": torch.rand(2, 8, 3, 3, generator=g)}


def test_gram_matrix_matches_direct_sum():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    expected = torch.empty(2, 3, 3, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected[b, i, j] = (x[b, i] * x[b, j]).sum() / (3 * 4 * 5)
    torch.testing.assert_close(gram_matrix(x), expected)
    assert gram_matrix(x.half()).dtype == torch.float32


def test_perceptual_and_style_zero_for_identical_and_positive_otherwise():
    a, b = _features(0), _features(1)
    assert perceptual_loss(a, a, LAYERS).item() == 0
    assert style_loss(a, a, LAYERS).item() == 0
    assert perceptual_loss(a, b, LAYERS).item() > 0
    assert style_loss(a, b, LAYERS).item() > 0
    # L1: the sum over layers of mean absolute differences.
    expected = sum((a[n] - b[n]).abs().mean() for n in LAYERS)
    torch.testing.assert_close(perceptual_loss(a, b, LAYERS), expected)
    expected = sum((gram_matrix(a[n]) - gram_matrix(b[n])).abs().mean() for n in LAYERS)
    torch.testing.assert_close(style_loss(a, b, LAYERS), expected)
    with pytest.raises(KeyError, match="relu3_1"):
        perceptual_loss(a, b, ("relu3_1",))


def test_vgg_loss_from_images_gradients_reach_fake_only():
    torch.manual_seed(0)
    loss = VGGLoss(VGG19Features(layers=LAYERS), perceptual_layers=LAYERS, style_layers=LAYERS)
    real = torch.rand(1, 3, 32, 32) * 2 - 1
    perceptual, style = loss(real, real)
    assert perceptual.item() == 0 and style.item() == 0
    fake = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    real.requires_grad_()
    perceptual, style = loss(fake, real)
    assert perceptual.item() > 0 and style.item() > 0
    (perceptual + style).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None  # the target goes through VGG without autograd
    assert all(p.grad is None for p in loss.vgg.parameters())
    with pytest.raises(ValueError, match="relu5_1"):
        VGGLoss(VGG19Features(layers=LAYERS))  # default layers need relu5_1


def test_gan_loss_values_on_known_logits():
    x = torch.tensor([[-2.0, -0.5], [0.5, 3.0]])
    # lsgan: mean((x - t)^2)
    assert gan_loss(x, True, "lsgan").item() == pytest.approx(((x - 1) ** 2).mean().item())
    assert gan_loss(x, False, "lsgan").item() == pytest.approx((x**2).mean().item())
    assert gan_loss(x, True, "lsgan", for_discriminator=False).item() == pytest.approx(((x - 1) ** 2).mean().item())
    # hinge: relu(1 - x) = [3, 1.5, 0.5, 0], relu(1 + x) = [0, 0.5, 1.5, 4]
    assert gan_loss(x, True, "hinge").item() == pytest.approx(5.0 / 4)
    assert gan_loss(x, False, "hinge").item() == pytest.approx(6.0 / 4)
    assert gan_loss(x, True, "hinge", for_discriminator=False).item() == pytest.approx(-1.0 / 4)
    with pytest.raises(ValueError, match="hinge generator"):
        gan_loss(x, False, "hinge", for_discriminator=False)
    # bce: softplus(-x) for real, softplus(x) for fake
    assert gan_loss(x, True, "bce").item() == pytest.approx(torch.nn.functional.softplus(-x).mean().item())
    assert gan_loss(x, False, "bce").item() == pytest.approx(torch.nn.functional.softplus(x).mean().item())
    with pytest.raises(ValueError, match="mode"):
        gan_loss(x, True, "wgan")


def test_default_loss_weights():
    assert SCFTLossWeights() == SCFTLossWeights(l1=30, adversarial=1, triplet=1, perceptual=0.01, style=50)
    assert GuidingPainterLossWeights() == GuidingPainterLossWeights(l1=30, adversarial=0.2, hint=5, smoothness=1)


@pytest.mark.parametrize("spectral_norm, norm", [(False, "instance"), (True, "none"), (False, "batch")])
def test_patch_discriminator_70x70_output_shape_and_gradients(spectral_norm, norm):
    torch.manual_seed(0)
    d = PatchDiscriminator(4, base_channels=8, num_layers=3, spectral_norm=spectral_norm, norm=norm)
    image = torch.randn(2, 4, 256, 256, requires_grad=True)
    logits = d(image)
    assert logits.shape == (2, 1, 30, 30)
    gan_loss(logits, True, "hinge").backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters() if p.requires_grad)
    if spectral_norm:
        convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)


def test_patch_discriminator_default_width_layout():
    d = PatchDiscriminator(4)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [
        (4, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 1, 1)
    ]  # fmt: skip
    assert all(m.kernel_size == (4, 4) for m in convs)


def test_conditional_discriminator_concatenates_image_and_sketch():
    torch.manual_seed(0)
    d = ConditionalPatchDiscriminator(image_channels=3, condition_channels=1, base_channels=8)
    image, sketch = torch.randn(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(d(image, sketch), d.net(torch.cat([image, sketch], 1)))
    assert d(image, sketch).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="spatial"):
        d(image, torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        d(image, torch.rand(1, 3, 64, 64))

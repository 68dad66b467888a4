"""The exemplar colorizer's networks: AdaIN's statistics, the frozen encoders (average pooling, the
pretrained weights), the transfer and colorization sub-nets on odd sizes, the masking rule, the
losses, the config and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refcolor.exemplar_losses import ExemplarLossWeights, transfer_losses, weighted_smooth_l1
from refcolor.models.adain import adain, channel_stats
from refcolor.models.efficientnet_lite import EfficientNetLite0, weights_available
from refcolor.models.exemplar_colorizer import ExemplarColorizer, ExemplarColorizerConfig
from refcolor.models.exemplar_encoder import ExemplarEncoder
from refcolor.models.exemplar_masking import inference_hint_mask, lattice_stride, masked_hints, random_hint_mask
from refcolor.models.registry import build_model, model_config

TINY = {"decoder_widths": (8, 8, 8, 8), "unet_widths": (8, 16), "image_size": 32}


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_adain_gives_the_content_the_style_statistics(dtype, atol):
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 7, 9, generator=generator, dtype=dtype) * 3 + 1
    style = torch.randn(2, 5, 4, 6, generator=generator, dtype=dtype) * 0.5 - 2
    out = adain(content, style, eps=0.0)
    out_mean, out_std = channel_stats(out, eps=0.0)
    style_mean, style_std = channel_stats(style, eps=0.0)
    torch.testing.assert_close(out_mean, style_mean, atol=atol, rtol=0)
    torch.testing.assert_close(out_std, style_std, atol=atol, rtol=atol)
    # The normalised content is kept: AdaIN is an affine map per channel.
    content_mean, content_std = channel_stats(content, eps=0.0)
    torch.testing.assert_close(
        (out - out_mean) / out_std, (content - content_mean) / content_std, atol=atol * 10, rtol=0
    )


def test_adain_bad_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="same B and C"):
        adain(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, 4))


def test_vgg_encoder_has_average_pooling_and_loads_torchvision_weights(tmp_path):
    encoder = ExemplarEncoder("vgg19")
    assert not any(isinstance(m, nn.MaxPool2d) for m in encoder.modules())
    assert sum(isinstance(m, nn.AvgPool2d) for m in encoder.modules()) == 3
    features = encoder(torch.rand(1, 3, 24, 40))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 24, 40), (128, 12, 20), (256, 6, 10), (512, 3, 5)]
    from refcolor.models.vgg import VGG19Features

    source = VGG19Features(("relu5_1",))  # random torchvision-layout weights stand in for ImageNet's
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in source.features.state_dict().items()}, path)
    encoder.load_pretrained(vgg_weights=str(path))
    torch.testing.assert_close(encoder.features[19].weight, source.features[19].weight)  # conv4_1
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.skipif(not weights_available(), reason="needs the extra refcolor[features]")
def test_efficientnet_encoder_levels_are_the_pretrained_network_stages():
    encoder = ExemplarEncoder("efficientnet-lite0").load_pretrained()
    encoder.train()  # stays in eval mode: frozen batch norm
    assert not encoder.training
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    network = EfficientNetLite0.from_pretrained()
    expected = network.forward_layers(images, ("stem", "stage2", "stage3", "stage4"))
    got = encoder(images)
    for level, name in enumerate(("stem", "stage2", "stage3", "stage4")):
        torch.testing.assert_close(got[level] * encoder.scales[level], expected[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoder", ["efficientnet-lite0", "vgg19"])
@pytest.mark.parametrize("size", [(32, 32), (29, 47)])
def test_model_colours_any_size_and_exemplar_shape(encoder, size):
    model = ExemplarColorizer(ExemplarColorizerConfig(encoder=encoder, **TINY)).eval()
    luminance = torch.rand(2, 1, *size) * 2 - 1
    exemplar = torch.rand(2, 3, 21, 35)
    with torch.no_grad():
        out = model(luminance, exemplar)
    assert out.ab.shape == out.transfer.t_ab.shape == (2, 2, *size)
    assert out.ab.abs().max() <= 1 and out.mask.shape == (2, 1, *size)
    assert len(out.transfer.stylised) == 4


def test_stages_train_what_they_should():
    model = ExemplarColorizer(ExemplarColorizerConfig(**TINY))
    luminance, exemplar = torch.rand(1, 1, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32)
    mask = random_hint_mask((1, 32, 32), 0.5, generator=torch.Generator().manual_seed(0))

    def grads(stage):
        model.zero_grad(set_to_none=True)
        out = model(luminance, exemplar, mask, stage=stage)
        (out.transfer.t_ab.sum() + (out.ab.sum() if out.ab is not None else 0)).backward()
        return {name for name, p in model.named_parameters() if p.grad is not None}

    decoder = {n for n, p in model.named_parameters() if n.startswith("transfer.") and p.requires_grad}
    unet = {n for n, _ in model.named_parameters() if n.startswith("colorization.")}
    assert grads("transfer") == decoder
    assert grads("colorization") == unet
    assert grads("end_to_end") == decoder | unet
    assert not any(n.startswith("transfer.encoder.") for n in decoder)  # the encoder is frozen


def test_training_mask_keeps_each_pixel_with_one_percent_probability():
    mask = random_hint_mask((4, 200, 200), 0.99, generator=torch.Generator().manual_seed(3))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    kept = mask.mean().item()
    assert abs(kept - 0.01) < 0.0015, kept  # 160,000 draws: 3 standard deviations ~ 0.00075
    again = random_hint_mask((4, 200, 200), 0.99, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)


def test_full_hint_probability_gives_some_samples_the_whole_t_ab():
    shape = (400, 20, 20)
    sparse = random_hint_mask(shape, 0.99, generator=torch.Generator().manual_seed(5))
    mixed = random_hint_mask(shape, 0.99, full_hint_probability=0.5, generator=torch.Generator().manual_seed(5))
    whole = mixed.flatten(1).min(dim=1).values == 1
    assert 150 < whole.sum() < 250  # 400 samples at 0.5: 5 standard deviations ~ 50
    # The other samples are the slides' masks, the very draws a run without the option makes.
    assert torch.equal(mixed[~whole], sparse[~whole])
    assert random_hint_mask(shape, 0.99, full_hint_probability=1.0).min() == 1
    with pytest.raises(ValueError, match=r"full_hint_probability: expected a number in \[0, 1\], got 1.5"):
        random_hint_mask(shape, 0.99, full_hint_probability=1.5)


def test_inference_mask_has_the_training_density_on_a_lattice():
    assert lattice_stride(0.99) == 10
    mask = inference_hint_mask((1, 100, 120), 0.99)
    assert mask.sum() == 10 * 12 and mask[0, 0, 5, 5] == 1 and mask[0, 0, 5, 15] == 1
    assert inference_hint_mask((1, 5, 3), 0.99).sum() == 1  # smaller than a cell: its middle pixel
    assert inference_hint_mask((2, 4, 4), 0.99, "full").sum() == 32
    t_ab = torch.rand(1, 2, 100, 120)
    hints = masked_hints(t_ab, mask)
    assert torch.equal(hints[:, :2], t_ab * mask) and torch.equal(hints[:, 2:], mask)
    with pytest.raises(ValueError, match="inference_hints: expected one of"):
        inference_hint_mask((1, 4, 4), 0.99, "dense")


def test_weighted_smooth_l1_scales_prediction_and_target():
    prediction, target = torch.zeros(1, 2, 1, 2), torch.tensor([0.05, 0.5]).view(1, 1, 1, 2).expand(1, 2, 1, 2)
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    # Hint pixel: |11 * 0.05| = 0.55 < 1, quadratic: 0.5 * 0.55^2; other pixel 0.5 * 0.5^2.
    expected = (0.5 * 0.55**2 + 0.5 * 0.5**2) / 2
    torch.testing.assert_close(weighted_smooth_l1(prediction, target, mask, 10.0), torch.tensor(expected))
    # In the linear zone a hint pixel weighs (1 + lambda): |11 * 0.5| - 0.5.
    target = torch.full((1, 2, 1, 1), 0.5)
    torch.testing.assert_close(
        weighted_smooth_l1(torch.zeros(1, 2, 1, 1), target, torch.ones(1, 1, 1, 1), 10.0), torch.tensor(5.0)
    )


def test_weighted_smooth_l1_sample_weight_leaves_other_image_exemplars_out():
    prediction = torch.zeros(3, 2, 4, 4)
    target = torch.stack([torch.full((2, 4, 4), 0.1), torch.full((2, 4, 4), 0.9), torch.full((2, 4, 4), 0.3)])
    mask = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    own = torch.tensor([1.0, 0.0, 1.0])  # sample 1's exemplar is another image: its target says nothing
    weighted = weighted_smooth_l1(prediction, target, mask, 10.0, sample_weight=own)
    kept = weighted_smooth_l1(prediction[[0, 2]], target[[0, 2]], mask[[0, 2]], 10.0)
    torch.testing.assert_close(weighted, kept)
    every = weighted_smooth_l1(prediction, target, mask, 10.0, sample_weight=torch.ones(3))
    torch.testing.assert_close(every, weighted_smooth_l1(prediction, target, mask, 10.0))
    assert weighted_smooth_l1(prediction, target, mask, 10.0, sample_weight=torch.zeros(3)) == 0


def test_transfer_losses_leave_other_image_exemplars_out_of_reconstruction():
    features = [torch.rand(2, 4, 4, 4) for _ in range(4)]
    output, target = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    target[1] = 0  # sample 1 matches its target
    terms = transfer_losses(features, output, target, features, features, features, torch.tensor([0.0, 1.0]))
    assert terms["reconstruction"] == 0 and terms["perceptual"] == 0 and terms["content"] == 0 and terms["style"] == 0
    terms = transfer_losses(features, output, target, features, features, features, torch.tensor([1.0, 1.0]))
    assert terms["reconstruction"] == 0.5
    assert ExemplarLossWeights().style == 1e6 and ExemplarLossWeights().reconstruction == 0.8


def test_config_presets_stages_and_registry():
    paper = model_config("exemplar", "paper")
    assert paper.encoder == "vgg19" and paper.lr_transfer == 1e-3 and paper.lr_end_to_end == 1e-5
    small = ExemplarColorizerConfig(transfer_steps=2, colorization_steps=3)
    assert [small.stage(s) for s in (0, 1, 2, 4, 5, 99)] == [
        "transfer",
        "transfer",
        "colorization",
        "colorization",
        "end_to_end",
        "end_to_end",
    ]
    assert small.learning_rate(0) == small.lr_transfer and small.learning_rate(5) == small.lr_end_to_end
    config = ExemplarColorizerConfig(**TINY)
    assert ExemplarColorizerConfig.from_dict(config.to_dict()) == config
    assert isinstance(build_model("exemplar", config.to_dict()), ExemplarColorizer)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("mask_probability", 1.0, "'mask_probability' must be a number in \\[0, 1\\), got 1.0"),
        ("full_hint_probability", -0.1, "'full_hint_probability' must be a number in \\[0, 1\\], got -0.1"),
        ("encoder", "resnet", "'encoder' must be one of"),
        ("decoder_widths", (8, 8), "'decoder_widths' must be a tuple of 4 positive ints"),
        ("image_size", 4, "'image_size' must be an int >= 8, got 4"),
        ("lr_transfer", 0, "'lr_transfer' must be a number > 0"),
        ("correspondence", "flow", "'correspondence' must be one of \\('none', 'features'\\), got 'flow'"),
        ("correspondence_stride", 0, "'correspondence_stride' must be a positive int, got 0"),
        ("correspondence_temperature", 0.0, "'correspondence_temperature' must be a number > 0, got 0.0"),
        ("strong_warp_probability", 1.5, "'strong_warp_probability' must be a number in \\[0, 1\\], got 1.5"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        ExemplarColorizerConfig(**{field: value})


def test_model_bad_inputs_are_one_line_errors():
    model = ExemplarColorizer(ExemplarColorizerConfig(**TINY))
    with pytest.raises(ValueError, match=r"argument 'luminance' must be \(B, 1, H, W\), got \(1, 3, 8, 8\)"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="argument 'exemplar' must have the luminance's batch size 2, got 1"):
        model(torch.zeros(2, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="argument 'stage' must be one of"):
        model(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8), stage="all")

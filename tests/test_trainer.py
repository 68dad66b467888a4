"""The shared GAN trainer with both tasks: learning, exact resume, checkpoints, samples, weights,
the fused ops in the step, VGG losses on and off, and bad input."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from PIL import Image

from refcolor.models.loading import load_model
from refcolor.models.vgg import VGG19Features
from refcolor.train.checkpoint import load_checkpoint
from refcolor.train.config import TrainConfig
from refcolor.train.progress import read_metrics
from refcolor.train.tasks.scft import VGGUnavailableWarning
from refcolor.train.trainer import RunExistsError, Trainer
from tests.training_helpers import small_image_folder, tiny_config

MODELS = ("scft", "guide")


@pytest.fixture(autouse=True)
def no_vgg_weights(monkeypatch, tmp_path):
    # Tests must never find (or download) real VGG weights: an empty hub dir and no env var; and
    # feature_network="auto" must not fall back to EfficientNet-Lite0 (its env var names no file).
    monkeypatch.delenv("REFCOLOR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS", str(tmp_path / "no-efficientnet.pth"))


def _quiet_trainer(config, **kwargs) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VGGUnavailableWarning)
        return Trainer(config, log=lambda *a: None, **kwargs)


@pytest.mark.parametrize("model", MODELS)
def test_steps_on_a_fixed_batch_reduce_the_loss(tmp_path, model):
    trainer = _quiet_trainer(tiny_config(tmp_path, model, lr_generator=1e-3, lr_discriminator=1e-4))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(4)])
    # The same step index every time: the same augmentation, hints and Gumbel noise, a fixed batch.
    l1 = [trainer.train_step(images, 0)["l1"] for _ in range(25)]
    assert sum(l1[-5:]) / 5 < 0.7 * l1[0], l1


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("model", MODELS)
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, model):
    straight = _quiet_trainer(tiny_config(tmp_path / "a", model, checkpoint_every=10))
    straight.fit()
    config = tiny_config(tmp_path / "b", model, checkpoint_every=10)
    first = _quiet_trainer(config)
    assert first.fit(until=2)["step"] == 2  # stops at step 2 with a checkpoint, like Ctrl-C
    assert load_checkpoint(first.manager.latest_path())["step"] == 2
    resumed = _quiet_trainer(config, resume=True)
    assert resumed.start_step == 2
    resumed.fit()
    for name in ("generator", "discriminator"):
        a, b = _state(straight.models[name]), _state(resumed.models[name])
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    adam_a = straight.opt_g.state_dict()["state"]
    adam_b = resumed.opt_g.state_dict()["state"]
    assert all(torch.equal(adam_a[i]["exp_avg_sq"], adam_b[i]["exp_avg_sq"]) for i in adam_a)
    logs_a = {r["step"]: r for r in read_metrics(straight.run_dir)}
    logs_b = {r["step"]: r for r in read_metrics(resumed.run_dir)}
    for step in (3, 4):
        assert logs_a[step]["g"] == logs_b[step]["g"] and logs_a[step]["d"] == logs_b[step]["d"]


@pytest.mark.parametrize("model,columns", [("scft", 4), ("guide", 5)])
def test_run_directory_holds_checkpoints_samples_logs_and_weights(tmp_path, model, columns):
    trainer = _quiet_trainer(tiny_config(tmp_path, model, keep_last=1))
    summary = trainer.fit()
    assert summary["step"] == 4 and summary["stopped"] == "done"
    run = trainer.run_dir
    assert [p.name for p in (run / "checkpoints").glob("step_*.pt")] == ["step_00000004.pt"]  # keep_last=1
    grids = sorted((run / "samples").glob("*.png"))
    assert [p.name for p in grids] == ["step_00000002.png", "step_00000004.png"]
    width, height = Image.open(grids[-1]).size
    assert width == columns * (32 + 2) + 2 and height == 2 * (32 + 2) + 2 + 14  # 2 rows, labels on top
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"g", "d", "l1", "adversarial", "images_per_s"} <= set(records[-1])
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == model and saved["model_config"]["image_size"] == 32
    loaded = load_model(run, expected_kind=model)
    assert loaded.source.name == "model.safetensors" and not loaded.model.training
    for key, value in trainer.task.generator.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
    from_checkpoint = load_model(run / "checkpoints" / "step_00000004.pt")
    assert from_checkpoint.kind == model


def test_fused_ops_run_in_the_training_step(tmp_path):
    trainer = _quiet_trainer(tiny_config(tmp_path, "scft"))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.train_step(images, 0)
    names = {event.name for event in prof.events()}
    assert "refcolor::tps_warp" in names  # the augmented-self reference warps with the fused kernel


def test_scft_forward_goes_through_the_fused_attention_op(tmp_path):
    pytest.importorskip("triton")
    from tests.helpers import usable

    if not usable("triton", "cpu"):
        pytest.skip("triton backend not usable here")
    trainer = _quiet_trainer(
        tiny_config(
            tmp_path,
            "scft",
            backend="triton",
            image_size=16,
            discriminator_layers=2,
            model_overrides={"encoder_widths": [4, 8]},
        )
    )
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        logs = trainer.train_step(images, 0)
    names = {event.name for event in prof.events()}
    assert {"refcolor::scft_attention", "refcolor::scft_attention_backward", "refcolor::tps_warp"} <= names
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())


def test_guide_step_uses_the_fused_hint_op(tmp_path):
    trainer = _quiet_trainer(tiny_config(tmp_path, "guide"))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.train_step(images, 0)
    names = {event.name for event in prof.events()}
    assert {"refcolor::segment_hint_colors", "refcolor::segment_hint_colors_backward"} <= names


def test_vgg_losses_switch_off_with_one_warning_and_on_with_a_weights_file(tmp_path):
    with pytest.warns(VGGUnavailableWarning, match="perceptual and style losses are off") as record:
        trainer = Trainer(tiny_config(tmp_path / "off"), log=lambda *a: None)
    assert len([w for w in record if w.category is VGGUnavailableWarning]) == 1
    assert trainer.task.weights["perceptual"] == 0 and trainer.task.weights["style"] == 0

    state = {f"features.{k}": v.half() for k, v in VGG19Features().features.state_dict().items()}
    weights = tmp_path / "vgg19.pth"
    torch.save(state, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VGGUnavailableWarning)
        trainer = Trainer(tiny_config(tmp_path / "on", vgg_weights=str(weights)), log=lambda *a: None)
    assert trainer.task.weights["perceptual"] == 0.01 and trainer.task.weights["style"] == 50
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    logs = trainer.train_step(images, 0)
    assert logs["perceptual"] > 0 and logs["style"] > 0


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    folder = small_image_folder(tmp_path / "data", 4, with_garbage=True)
    trainer = _quiet_trainer(tiny_config(tmp_path, data=str(folder), steps=1))
    assert trainer.skipped_images == 1 and len(trainer.dataset) == 4
    assert trainer.fit()["step"] == 1


def test_existing_run_needs_resume_and_resume_needs_the_same_model(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    _quiet_trainer(config).fit()
    with pytest.raises(RunExistsError, match="--resume"):
        _quiet_trainer(config)
    with pytest.raises(ValueError, match=r"different config: batch_size \(saved 2, given 4\)"):
        _quiet_trainer(config.replace(batch_size=4), resume=True)
    more = _quiet_trainer(config.replace(steps=3), resume=True)  # more steps is a schedule change
    assert more.fit()["step"] == 3
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _quiet_trainer(tiny_config(tmp_path / "fresh"), resume=True)


def test_dataset_smaller_than_a_batch_is_a_clear_error(tmp_path):
    folder = small_image_folder(tmp_path / "data", 1)
    trainer = _quiet_trainer(tiny_config(tmp_path, data=str(folder)))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        trainer.fit()


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ValueError, match="'batch_size' must be an int >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="'model' must be one of"):
        TrainConfig(model="pix2pix")
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="unknown loss_weights"):
        Trainer(TrainConfig(model="guide", loss_weights={"triplet": 1.0}, out="/nonexistent/x", device="cpu"))


def test_tensorboard_gets_scalars_and_sample_grids_when_installed(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is optional)
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append(("scalar", tag, step))

        def add_image(self, tag, image, step):
            calls.append(("image", tag, tuple(image.shape), step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    _quiet_trainer(tiny_config(tmp_path, "guide", steps=2, tensorboard=True)).fit()
    assert calls[0] == ("init", str(tmp_path / "run" / "tensorboard")) and calls[-1] == ("close",)
    assert ("scalar", "l1", 2) in calls and ("scalar", "images_per_s", 1) in calls
    assert ("image", "samples", (3, 2 * 34 + 2, 5 * 34 + 2), 2) in calls


# ----------------------------------------------------------------- the AMP step, in the parts a CPU can run
# The trainer's AMP path is CUDA-only (float16 autocast; amp="on" on a CPU is an error). The pieces
# that are not CUDA-specific run here: the GradScaler's skip-and-back-off protocol around both
# optimisers, with a CPU GradScaler swapped in, and the step's dtype handling under CPU bfloat16 autocast.


def _with_cpu_amp(trainer: Trainer, init_scale: float, autocast: bool) -> Trainer:
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    if autocast:
        trainer._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return trainer


def test_amp_on_a_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="amp='on' needs a CUDA device"):
        _quiet_trainer(tiny_config(tmp_path, amp="on"))


@pytest.mark.parametrize("model", MODELS)
def test_overflowing_scaled_step_is_skipped_for_both_networks_and_the_scale_backs_off(tmp_path, model):
    """Gradients scaled past float32's range are inf: neither optimiser may step (no NaN weights),
    and the scale halves once per step. A finite scale then updates both networks."""
    trainer = _quiet_trainer(tiny_config(tmp_path, model))
    assert not trainer.scaler.is_enabled()  # amp="auto" is off on a CPU
    trainer = _with_cpu_amp(trainer, 2.0**127, autocast=False)
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    before = {name: _state(m) for name, m in trainer.models.items()}
    trainer.train_step(images, 0)
    for name, module in trainer.models.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, before[name][key]), (name, key)
    assert trainer.scaler.get_scale() == 2.0**126
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    trainer.train_step(images, 0)
    for name, module in trainer.models.items():
        params = dict(module.named_parameters())
        changed = [k for k, v in before[name].items() if k in params and not torch.equal(params[k].detach(), v)]
        assert changed and all(torch.isfinite(p).all() for p in params.values()), name
    assert trainer.scaler.get_scale() == 2.0**8  # no overflow: the scale stays (growth after 2000 steps)


@pytest.mark.parametrize("model", MODELS)
def test_step_under_cpu_bfloat16_autocast_matches_float32(tmp_path, model):
    """The step's casts under autocast (the discriminator's float32 logits, the fake cast back to the
    target's dtype, float32 losses): a bfloat16-autocast step with a scaler gives finite float32
    weights and losses within bfloat16 precision of the float32 step."""
    plain = _quiet_trainer(tiny_config(tmp_path / "a", model))
    mixed = _with_cpu_amp(_quiet_trainer(tiny_config(tmp_path / "b", model)), 2.0**10, autocast=True)
    images = torch.stack([plain.dataset[i]["image"] for i in range(2)])
    logs_plain, logs_mixed = plain.train_step(images, 0), mixed.train_step(images, 0)
    assert set(logs_plain) == set(logs_mixed)
    assert logs_mixed != logs_plain  # autocast did run in bfloat16
    for key, value in logs_plain.items():
        assert logs_mixed[key] == pytest.approx(value, rel=0.05, abs=0.02), key
    for name, module in mixed.models.items():
        for p in module.parameters():
            assert p.dtype == torch.float32 and torch.isfinite(p).all(), name

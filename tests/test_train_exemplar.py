"""`refcolor train --model exemplar` through the shared trainer: the stages and their learning rates,
the exemplars (augmented self and other images), a few steps lowering the loss, exact resume across
stages, the run directory, no discriminator, and clear errors."""

from __future__ import annotations

import pytest
import torch

from refcolor.cli import main
from refcolor.models.efficientnet_lite import weights_available
from refcolor.models.loading import load_model
from refcolor.train.progress import read_metrics
from refcolor.train.trainer import Trainer
from tests.training_helpers import tiny_config

pytestmark = pytest.mark.skipif(not weights_available(), reason="needs the extra refcolor[features] (the encoder)")
TINY_MODEL = {"decoder_widths": [8, 8, 8, 8], "unet_widths": [8, 16], "transfer_steps": 1, "colorization_steps": 1}


def _config(tmp_path, **overrides):
    settings = {"model_overrides": dict(TINY_MODEL), "betas": [0.9, 0.999]}
    settings.update(overrides)
    return tiny_config(tmp_path, "exemplar", **settings)


def _trainer(config, **kwargs) -> Trainer:
    return Trainer(config, log=lambda *a: None, **kwargs)


def test_prepare_mixes_self_and_other_image_exemplars(tmp_path):
    trainer = _trainer(_config(tmp_path, model_overrides={**TINY_MODEL, "self_exemplar_probability": 0.5}))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(4)])
    data = trainer.task.prepare(images, torch.Generator().manual_seed(2))
    own = data["self"].bool()
    assert 0 < own.sum() < 4  # this seed draws both kinds
    target = data["target_rgb"]
    for b in range(4):
        if own[b]:  # warped copy of its own target: not equal, but close in colour
            assert not torch.equal(data["exemplar"][b], target[b])
        else:  # the next image's target
            assert torch.equal(data["exemplar"][b], target[(b - 1) % 4])
    assert data["mask"].shape == (4, 1, 32, 32) and data["luminance"].shape == (4, 1, 32, 32)


def test_prepare_gives_whole_t_ab_masks_at_full_hint_probability(tmp_path):
    overrides = {**TINY_MODEL, "full_hint_probability": 1.0}
    trainer = _trainer(_config(tmp_path, model_overrides=overrides))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    assert trainer.task.prepare(images, torch.Generator().manual_seed(2))["mask"].min() == 1
    sparse = _trainer(_config(tmp_path / "sparse")).task.prepare(images, torch.Generator().manual_seed(2))["mask"]
    assert sparse.mean() < 0.1  # the slides' 1% by default


def test_stages_set_the_learning_rate_and_the_losses(tmp_path):
    trainer = _trainer(_config(tmp_path))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    logs = [trainer.train_step(images, step) for step in range(3)]
    assert {"reconstruction", "perceptual", "content", "style"} <= set(logs[0]) and "colorization" not in logs[0]
    assert set(logs[1]) == {"g", "d", "colorization"}
    assert {"style", "colorization"} <= set(logs[2])
    assert all(log["d"] == 0 for log in logs)  # no discriminator update
    assert trainer.opt_g.param_groups[0]["lr"] == trainer.task.model_config.lr_end_to_end
    assert not trainer.opt_d.state  # the discriminator was never stepped


@pytest.mark.parametrize("stage_steps,term", [((100, 0), "reconstruction"), ((0, 100), "colorization")])
def test_steps_on_a_fixed_batch_reduce_the_loss(tmp_path, stage_steps, term):
    overrides = {**TINY_MODEL, "transfer_steps": stage_steps[0], "colorization_steps": stage_steps[1]}
    overrides.update(lr_transfer=3e-3, lr_colorization=3e-3)  # a few steps must show it
    # Self exemplars only, so the reconstruction term sees every sample.
    overrides["self_exemplar_probability"] = 1.0
    weights = {"style": 0.0, "content": 0.0} if term == "reconstruction" else {}
    trainer = _trainer(_config(tmp_path, model_overrides=overrides, loss_weights=weights))
    images = torch.stack([trainer.dataset[i]["image"] for i in range(4)])
    values = [trainer.train_step(images, 0)[term] for _ in range(10)]  # step 0: the same draws every time
    assert sum(values[-3:]) / 3 < 0.75 * values[0], values


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = _trainer(_config(tmp_path / "a", checkpoint_every=10))
    straight.fit()
    config = _config(tmp_path / "b", checkpoint_every=10)
    first = _trainer(config)
    assert first.fit(until=2)["step"] == 2  # stops after the transfer and colorization stages
    resumed = _trainer(config, resume=True)
    assert resumed.start_step == 2
    resumed.fit()
    a, b = _state(straight.models["generator"]), _state(resumed.models["generator"])
    for key in a:
        assert torch.equal(a[key], b[key]), f"generator.{key} differs after resume"
    logs_a = {r["step"]: r for r in read_metrics(straight.run_dir)}
    logs_b = {r["step"]: r for r in read_metrics(resumed.run_dir)}
    for step in (3, 4):
        assert logs_a[step]["g"] == logs_b[step]["g"] and logs_a[step]["colorization"] == logs_b[step]["colorization"]


def test_cli_run_writes_weights_samples_and_loads_back(tmp_path, capsys):
    config = _config(tmp_path)
    args = ["train", "--model", "exemplar", "--data", config.data, "--out", config.out, "--size", "32"]
    args += ["--steps", "2", "--batch-size", "2", "--device", "cpu", "--progress", "off", "--sample-every", "2"]
    toml = tmp_path / "exemplar.toml"
    toml.write_text(
        "tensorboard = false\nbetas = [0.9, 0.999]\n[model_overrides]\ndecoder_widths = [8, 8, 8, 8]\n"
        "unet_widths = [8, 16]\ntransfer_steps = 1\ncolorization_steps = 0\n"
    )
    assert main([*args, "--config", str(toml)]) == 0
    run = tmp_path / "run"
    assert (run / "samples" / "step_00000002.png").is_file()
    loaded = load_model(run, expected_kind="exemplar")  # model.safetensors
    assert loaded.source.name == "model.safetensors" and loaded.model.config.unet_widths == (8, 16)
    from_checkpoint = load_model(run / "checkpoints" / "step_00000002.pt").model.state_dict()
    assert from_checkpoint.keys() == loaded.model.state_dict().keys()
    assert all(torch.equal(v, from_checkpoint[k]) for k, v in loaded.model.state_dict().items())
    # The frozen encoder is stored too (a weights file alone rebuilds the model), with ImageNet weights.
    from refcolor.models.efficientnet_lite import EfficientNetLite0

    imagenet = EfficientNetLite0.from_pretrained()._conv_stem.weight
    assert torch.equal(from_checkpoint["transfer.encoder._conv_stem.weight"], imagenet)


def test_feature_network_must_match_the_encoder_and_lr_generator_is_refused(tmp_path):
    with pytest.raises(ValueError, match="feature_network must be 'auto' or the exemplar encoder 'efficientnet-lite0'"):
        _trainer(_config(tmp_path, feature_network="vgg19"))
    with pytest.raises(ValueError, match="'lr_generator' does not apply to model 'exemplar' .* got 0.001"):
        _trainer(_config(tmp_path, lr_generator=1e-3))


def test_missing_encoder_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS", str(tmp_path / "none.pth"))
    with pytest.raises(ValueError, match="the exemplar encoder 'efficientnet-lite0' needs its ImageNet weights"):
        _trainer(_config(tmp_path))


DDP_SCRIPT = """
import os, sys, torch
from refcolor.train.config import TrainConfig
from refcolor.train.trainer import Trainer

data, out = sys.argv[1:3]
overrides = {"decoder_widths": [8, 8, 8, 8], "unet_widths": [8, 16], "transfer_steps": 1, "colorization_steps": 1}
config = TrainConfig(model="exemplar", image_size=32, data=data, out=out, batch_size=2, steps=3, checkpoint_every=3,
                     sample_every=3, log_every=1, num_samples=2, progress="lines", tensorboard=False, device="cpu",
                     model_overrides=overrides)
trainer = Trainer(config)
trainer.fit()
params = torch.cat([p.detach().flatten() for p in trainer.task.generator.parameters()])
torch.save(params, os.path.join(out, f"params_rank{trainer.info.rank}.pt"))
trainer.close()
"""


def test_two_gloo_processes_train_through_all_three_stages(tmp_path):
    import os
    import subprocess
    import sys

    from tests.training_helpers import small_image_folder

    script = tmp_path / "ddp_exemplar.py"
    script.write_text(DDP_SCRIPT)
    data, out = small_image_folder(tmp_path / "data", 8), tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*command, str(script), str(data), str(out)], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Each stage leaves part of the generator unused; the replicas still take the same steps.
    assert torch.equal(torch.load(out / "params_rank0.pt"), torch.load(out / "params_rank1.pt"))
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]


def test_strong_warp_exemplars_and_a_fine_tune_of_the_transfer_sub_net(tmp_path):
    """strong_warp_probability 1: every self exemplar gets the strong affine warp (another picture
    than the mild TPS of the same draw); init_weights + init_modules ["transfer"]: the run starts
    with the source's transfer sub-net, and --resume does not load it again over the checkpoint."""
    from refcolor.models.registry import describe
    from refcolor.models.weights import save_weights

    base = {**TINY_MODEL, "self_exemplar_probability": 1.0}
    mild = _trainer(_config(tmp_path / "mild", model_overrides=base))
    images = torch.stack([mild.dataset[i]["image"] for i in range(2)])
    strong = _trainer(_config(tmp_path / "strong", model_overrides={**base, "strong_warp_probability": 1.0}))
    a = mild.task.prepare(images, torch.Generator().manual_seed(3))
    b = strong.task.prepare(images, torch.Generator().manual_seed(3))
    assert torch.equal(a["target_rgb"], b["target_rgb"]) and not torch.equal(a["exemplar"], b["exemplar"])

    source = tmp_path / "source.safetensors"
    save_weights(source, mild.models["generator"], describe("exemplar", mild.task.model_config))
    overrides = {**base, "correspondence": "features", "transfer_steps": 0}
    config = _config(tmp_path / "tuned", model_overrides=overrides, init_weights=str(source), init_modules=["transfer"])
    tuned = _trainer(config)
    for name, tensor in tuned.models["generator"].transfer.state_dict().items():
        assert torch.equal(tensor, mild.models["generator"].transfer.state_dict()[name]), name
    tuned.fit(until=2)
    after = _state(tuned.models["generator"])
    resumed = _trainer(config, resume=True)
    for key, tensor in _state(resumed.models["generator"]).items():
        assert torch.equal(tensor, after[key]), key
    with pytest.raises(ValueError, match="'init_modules' must be a non-empty list of submodule names, got \\[\\]"):
        _config(tmp_path / "bad", init_modules=[])

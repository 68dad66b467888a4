"""TrainConfig.lr_decay_start: pix2pix's linear learning-rate decay, applied to both optimisers,
and a resume that may add it before it begins but never rewrite steps already taken."""

from __future__ import annotations

import pytest
import torch

from refcolor.train.config import TrainConfig, lr_schedule_change
from refcolor.train.trainer import Trainer
from tests.training_helpers import tiny_config


def _trainer(config, resume=False):
    return Trainer(config, resume=resume, log=lambda *a, **k: None)


def _recorded_learning_rates(trainer) -> list[tuple[float, float]]:
    """(generator, discriminator) learning rate of every optimiser step the trainer takes."""
    seen: list[tuple[float, float]] = []
    step_g = trainer.opt_g.step

    def record_g(*args, **kwargs):
        seen.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
        return step_g(*args, **kwargs)

    trainer.opt_g.step = record_g
    trainer.fit()
    return seen


def test_lr_factor_is_flat_then_falls_linearly_to_the_last_step():
    config = TrainConfig(steps=10, lr_decay_start=6)
    assert [config.lr_factor(s) for s in range(10)] == pytest.approx([1] * 7 + [0.75, 0.5, 0.25])
    assert TrainConfig(steps=10).lr_factor(9) == 1.0  # no decay unless asked


@pytest.mark.parametrize("value", [-1, 10, 12, 2.5, True])
def test_lr_decay_start_must_be_a_step_of_the_run(value):
    with pytest.raises(ValueError, match=r"'lr_decay_start' must be an int"):
        TrainConfig(steps=10, lr_decay_start=value)


@pytest.mark.parametrize("model", ["guide", "scft"])
def test_both_optimisers_follow_the_decay(tmp_path, model):
    config = tiny_config(tmp_path, model, steps=4, lr_decay_start=2, lr_generator=1e-3, lr_discriminator=4e-3)
    rates = _recorded_learning_rates(_trainer(config))
    expected = [(1e-3, 4e-3)] * 3 + [(5e-4, 2e-3)]  # step 2 at full rate, the last one at 1 / 2
    assert [lr for pair in rates for lr in pair] == pytest.approx([lr for pair in expected for lr in pair])


def test_adding_a_decay_on_resume_equals_a_run_that_had_it_from_the_start(tmp_path):
    # The bundled guide recipe's shape: a constant-rate run, then resumed with a decay that begins
    # at the resumed step; the weights match a single run with the decay in its config.
    straight = tiny_config(tmp_path / "a", "guide", steps=4, lr_decay_start=2, temperature_steps=2)
    _trainer(straight).fit()

    first = tiny_config(tmp_path / "b", "guide", steps=2)
    _trainer(first).fit()
    resumed = _trainer(first.replace(steps=4, lr_decay_start=2), resume=True)
    assert resumed.start_step == 2
    resumed.fit()

    a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "step_00000004.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "run" / "checkpoints" / "step_00000004.pt", weights_only=False)
    for name, tensor in a["models"]["generator"].items():
        torch.testing.assert_close(b["models"]["generator"][name], tensor, rtol=0, atol=0)


def test_resume_refuses_to_rewrite_a_decay_that_has_begun(tmp_path):
    config = tiny_config(tmp_path, "scft", steps=4, lr_decay_start=1)
    _trainer(config.replace(steps=4)).fit()
    with pytest.raises(ValueError, match=r"decay had begun by step 4: lr_decay_start and steps must stay 1 and 4"):
        _trainer(config.replace(steps=8), resume=True)
    with pytest.raises(ValueError, match=r"got 2 and 4"):
        _trainer(config.replace(lr_decay_start=2), resume=True)


def test_lr_schedule_change_allows_what_has_not_happened_yet():
    constant, later = TrainConfig(steps=10), TrainConfig(steps=20, lr_decay_start=10)
    assert lr_schedule_change(constant, later, step=10) is None  # added where it begins
    assert lr_schedule_change(later, constant, step=10) is None  # dropped before it began
    assert lr_schedule_change(later, TrainConfig(steps=30, lr_decay_start=15), step=10) is None
    assert "had begun by step 11" in str(lr_schedule_change(constant, later, step=11))


def test_command_line_option_and_its_one_line_error(capsys):
    from refcolor.cli import _parser, main
    from refcolor.commands.train import build_config

    config, _ = build_config(_parser().parse_args(["train", "--steps", "50", "--lr-decay-start", "30"]))
    assert (config.steps, config.lr_decay_start) == (50, 30)
    assert main(["train", "--steps", "50", "--lr-decay-start", "50", "--progress", "off"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("'lr_decay_start' must be an int below steps (50) or None, got 50"), err
    assert len(err.splitlines()) == 1

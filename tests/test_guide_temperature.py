"""GuidingPainter's Gumbel temperature schedule is fixed when a run starts (issue 16 item 4): a
resumed run with another --steps continues the same annealing instead of restarting it."""

from __future__ import annotations

import pytest

from refcolor.models.guiding_painter import gumbel_temperature
from refcolor.train.trainer import Trainer
from tests.training_helpers import tiny_config


def _trainer(config, resume=False):
    return Trainer(config, resume=resume, log=lambda *a, **k: None)


def _recorded_temperatures(trainer) -> list[float]:
    seen = []
    original = trainer.task.temperature

    def record(step):
        tau = original(step)
        seen.append(tau)
        return tau

    trainer.task.temperature = record
    trainer.fit()
    return seen


def test_resume_with_more_steps_continues_the_same_temperature_schedule(tmp_path):
    config = tiny_config(tmp_path, "guide", steps=4, checkpoint_every=2, sample_every=100)
    first = _trainer(config)
    assert first.config.temperature_steps == 4  # fixed at the start, saved in the checkpoints
    taus_first = _recorded_temperatures(first)

    resumed = _trainer(config.replace(steps=8), resume=True)
    assert resumed.config.temperature_steps == 4
    taus_resumed = _recorded_temperatures(resumed)

    # Independent expectation: the exponential schedule 1 -> 0.1 over the first run's 4 steps.
    expected = [1.0 * 0.1 ** (min(s, 4) / 4) for s in range(8)]
    assert taus_first + taus_resumed == pytest.approx(expected)
    # What the schedule would have been had the new --steps been used: a jump back up at step 4.
    assert gumbel_temperature(4, 8) > 0.3 > taus_resumed[0]


def test_temperature_steps_is_frozen_on_resume_and_explicit_when_given(tmp_path):
    config = tiny_config(tmp_path, "guide", steps=2, temperature_steps=10, sample_every=100)
    trainer = _trainer(config)
    assert trainer.config.temperature_steps == 10
    assert trainer.task.temperature(5) == pytest.approx(0.1**0.5)
    trainer.fit()
    with pytest.raises(ValueError, match=r"temperature_steps \(saved 10, given 3\)"):
        _trainer(config.replace(steps=4, temperature_steps=3), resume=True)
    # Not given on resume (None): the saved value is kept.
    assert _trainer(config.replace(steps=4, temperature_steps=None), resume=True).config.temperature_steps == 10


def test_a_run_saved_before_the_key_existed_keeps_annealing_over_its_steps(tmp_path):
    config = tiny_config(tmp_path, "guide", steps=2, sample_every=100)
    old_style = dict(config.to_dict(), temperature_steps=None)
    assert config.fix_schedules(old_style).temperature_steps == 2
    assert config.replace(steps=6).fix_schedules(old_style).temperature_steps == 2
    assert tiny_config(tmp_path, "scft").fix_schedules().temperature_steps is None  # no schedule to fix


def test_temperature_steps_must_be_positive():
    from refcolor.train.config import TrainConfig

    with pytest.raises(ValueError, match="'temperature_steps' must be an int >= 1, got 0"):
        TrainConfig(temperature_steps=0)

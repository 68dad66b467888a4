"""scripts/fork_run.py: a run continued under a changed model option (GuidingPainter's
match_hint_means), with weights, optimiser state and step carried over; bad requests refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refcolor.cli import main
from refcolor.models.checkpoint_file import latest_checkpoint, load_checkpoint
from refcolor.models.loading import load_model
from refcolor.train.trainer import Trainer
from tests.helpers import load_script
from tests.training_helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fork_script():
    return load_script("fork_run")


def _fit(config) -> None:
    trainer = Trainer(config, log=lambda *a, **k: None)
    try:
        trainer.fit()
    finally:
        trainer.close()


def test_fork_continues_the_run_with_the_changed_option(tmp_path, fork_script, capsys):
    config = tiny_config(tmp_path, "guide", steps=2, sample_every=100)
    _fit(config)
    src, dst = Path(config.out), tmp_path / "forked"
    source = load_checkpoint(latest_checkpoint(src))
    assert fork_script.main([str(src), str(dst), "--model-override", "match_hint_means=true"]) == 0
    assert "refcolor train --out" in capsys.readouterr().out
    forked = load_checkpoint(latest_checkpoint(dst))
    assert forked["step"] == source["step"] == 2
    assert forked["config"]["model_overrides"]["match_hint_means"] is True
    assert forked["config"]["out"] == str(dst)
    for name, tensor in source["models"]["generator"].items():
        assert torch.equal(forked["models"]["generator"][name], tensor), name
    assert not (src / "checkpoints" / "step_00000004.pt").exists()

    assert main(["train", "--out", str(dst), "--resume", "--steps", "3", "--progress", "off"]) == 0  # as a user would
    assert load_checkpoint(latest_checkpoint(dst))["step"] == 3
    model = load_model(dst).model
    assert model.config.match_hint_means is True
    assert load_model(src).model.config.match_hint_means is False  # the source run is untouched


def test_fork_refuses_what_it_cannot_do(tmp_path, fork_script, capsys):
    config = tiny_config(tmp_path, "guide", steps=1, sample_every=100, checkpoint_every=1)
    _fit(config)
    src = Path(config.out)
    cases = [
        ([str(src), str(tmp_path / "a"), "--model-override", "depth=4"], "KEY one of ['match_hint_means']"),
        ([str(src), str(tmp_path / "b"), "--model-override", "match_hint_means=maybe"], "expects true or false"),
        ([str(src), str(tmp_path / "c")], "give at least one KEY=VALUE"),
        ([str(src), str(src), "--model-override", "match_hint_means=true"], "exists; a fork needs a new run"),
        ([str(tmp_path / "none"), str(tmp_path / "d"), "--model-override", "match_hint_means=true"], "src:"),
    ]
    for argv, message in cases:
        assert fork_script.main(argv) == 2
        out = capsys.readouterr().out.strip()
        assert len(out.splitlines()) == 1 and message in out, out
    assert not any((tmp_path / name).exists() for name in "abcd")

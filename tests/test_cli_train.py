"""`refcolor train` from the command line: settings precedence, Ctrl-C, resume and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from refcolor.cli import main
from refcolor.commands.train import build_config
from refcolor.train.checkpoint import CheckpointManager
from tests.training_helpers import small_image_folder

TINY = ["--size", "32", "--batch-size", "2", "--device", "cpu", "--progress", "off"]


def _parse(argv):
    from refcolor.cli import _parser

    return _parser().parse_args(argv)


def _fail(capsys, argv, match):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def test_defaults_then_config_file_then_options(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text('model = "guide"\nsteps = 50\nbatch_size = 3\nloss_weights = { hint = 2.0 }\n')
    config, resume = build_config(_parse(["train", "--config", str(cfg), "--steps", "7"]))
    assert (config.model, config.steps, config.batch_size, config.loss_weights) == ("guide", 7, 3, {"hint": 2.0})
    assert config.lr_generator == 1e-4 and config.betas == (0.5, 0.999) and not resume
    bad = tmp_path / "bad.json"
    bad.write_text('{"stepz": 3}')
    with pytest.raises(ValueError, match=r"unknown keys \['stepz'\]"):
        build_config(_parse(["train", "--config", str(bad)]))


def test_train_then_resume_with_more_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    data, out = small_image_folder(tmp_path), tmp_path / "run"
    argv = ["train", "--model", "guide", "--data", str(data), "--out", str(out), "--steps", "2", *TINY]
    assert main(argv) == 0
    assert CheckpointManager(out).checkpoints()[-1][0] == 2
    _fail(capsys, argv, "already holds a run")
    # Resume takes the saved settings; only what is given changes (here the number of steps).
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--progress", "off"]) == 0
    assert CheckpointManager(out).checkpoints()[-1][0] == 3
    # The Gumbel temperature keeps annealing over the first run's 2 steps (issue 16 item 4).
    from refcolor.train.trainer import saved_config

    assert saved_config(out)["steps"] == 3 and saved_config(out)["temperature_steps"] == 2
    _fail(capsys, ["train", "--out", str(out), "--resume", "--preset", "paper"], "cannot resume")


def test_errors_are_one_line(tmp_path, capsys):
    _fail(
        capsys,
        ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *TINY],
        "image folder not found",
    )
    _fail(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"], "nothing to resume")
    _fail(capsys, ["train", "--size", "30", "--out", str(tmp_path / "r2"), *TINY[2:]], "image_size")
    _fail(capsys, ["train", "--config", str(tmp_path / "nope.toml")], "config file not found")


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    data, out = small_image_folder(tmp_path), tmp_path / "run"
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "hub"), "REFCOLOR_VGG19_WEIGHTS": ""}
    cmd = [
        sys.executable,
        "-m",
        "refcolor",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "100000",
        "--checkpoint-every",
        "100000",
        "--log-every",
        "1",
        *TINY[:-2],
        "--progress",
        "lines",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # progress lines go to stderr
        if line.startswith("step 2/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    saved = CheckpointManager(out).checkpoints()
    assert saved and saved[-1][0] >= 2
    step = saved[-1][0]
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "refcolor",
            "train",
            "--out",
            str(out),
            "--resume",
            "--steps",
            str(step + 1),
            "--progress",
            "off",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and CheckpointManager(out).checkpoints()[-1][0] == step + 1

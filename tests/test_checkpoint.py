"""Crash-safe checkpoints: atomic writes, exact resume, weights_only loading, run-dir management,
clear errors, and the Ctrl-C guard."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn

from refcolor.train import (
    CheckpointManager,
    atomic_save,
    install_interrupt_handler,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- atomic_save


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failure):
    path = tmp_path / "ckpt.pt"
    atomic_save({"version": 1}, path)
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        f.write(b"partial bytes of a new checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(type(failure)):
        atomic_save({"version": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True) == {"version": 1}
    assert leftovers(tmp_path) == []


def test_atomic_save_replaces_and_creates_directories(tmp_path):
    path = tmp_path / "a" / "b" / "x.pt"
    atomic_save({"v": 1}, path)
    atomic_save({"v": 2}, path)
    assert torch.load(path, weights_only=True) == {"v": 2}
    assert leftovers(path.parent) == []


# ---------------------------------------------------------------- exact resume


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  the global RNG is the one a checkpoint carries
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def build(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 1))  # dropout draws torch RNG
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, optimizer


def train_steps(model, optimizer, augment: torch.Generator, n: int) -> None:
    for _ in range(n):
        # every RNG the checkpoint must carry contributes to the batch
        x = torch.randn(16, 4) + torch.from_numpy(np.random.randn(16, 4)).float()  # noqa: NPY002  the global RNG under test
        x = x * random.uniform(0.5, 1.5) + torch.rand(16, 4, generator=augment)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_resume_is_bit_identical_to_straight_run(tmp_path):
    augment = seed_everything(0)
    model, optimizer = build(0)
    train_steps(model, optimizer, augment, 6)
    straight = [p.detach().clone() for p in model.parameters()]

    augment = seed_everything(0)
    model, optimizer = build(0)
    train_steps(model, optimizer, augment, 3)
    manager = CheckpointManager(tmp_path)
    manager.save(3, {"g": model}, {"g": optimizer}, config={"lr": 1e-2}, generators={"augment": augment})

    # a fresh process would start from other seeds and other initial weights
    augment = seed_everything(1234)
    model, optimizer = build(99)
    ckpt = manager.load_latest(
        {"g": model}, {"g": optimizer}, generators={"augment": augment}, config={"lr": 1e-2}, strict_config=True
    )
    assert ckpt["step"] == 3
    train_steps(model, optimizer, augment, 3)
    for resumed, expected in zip(model.parameters(), straight, strict=True):
        assert torch.equal(resumed, expected)


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, optimizer = build(0)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=128.0)
    path = tmp_path / "c.pt"
    atomic_save(
        make_checkpoint(
            7,
            {"g": model},
            {"g": optimizer},
            scaler,
            {"size": [64, 64], "name": "x"},
            extra={"images_seen": 112},
            generators={"aug": torch.Generator()},
        ),
        path,
    )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["step"] == 7 and ckpt["extra"] == {"images_seen": 112}
    assert ckpt["scaler"]["scale"] == 128.0
    assert isinstance(ckpt["rng"]["numpy"][1], list) and isinstance(ckpt["rng"]["torch"], torch.Tensor)

    scaler2 = torch.amp.GradScaler("cpu")
    restore_checkpoint(path, {"g": build(1)[0]}, {"g": build(1)[1]}, scaler2, generators={"aug": torch.Generator()})
    assert scaler2.get_scale() == 128.0


def test_config_must_be_json_like():
    model, optimizer = build(0)
    with pytest.raises(TypeError, match="JSON-serializable"):
        make_checkpoint(0, {"g": model}, {"g": optimizer}, config={"data": object()})


# ---------------------------------------------------------------- CheckpointManager


def save_steps(manager, steps):
    model, optimizer = build(0)
    for step in steps:
        manager.save(step, {"g": model}, {"g": optimizer}, config={})
    return model, optimizer


def test_keep_last_prunes_oldest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    save_steps(manager, [10, 20, 30, 40])
    assert [s for s, _ in manager.checkpoints()] == [30, 40]
    assert manager.latest_path().name == "step_00000040.pt"
    assert leftovers(manager.directory) == []


def test_latest_follows_pointer_and_falls_back_to_highest_step(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=None)
    assert manager.latest_path() is None
    save_steps(manager, [5, 30])
    save_steps(manager, [20])  # resumed from an earlier step: the newest save is the latest
    assert manager.latest_path().name == "step_00000020.pt"
    (manager.directory / "latest").unlink()
    assert manager.latest_path().name == "step_00000030.pt"


def test_pruning_keeps_the_checkpoint_just_saved(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    save_steps(manager, [30, 10])
    assert [s for s, _ in manager.checkpoints()] == [10]


def test_load_latest_without_checkpoint(tmp_path):
    model, optimizer = build(0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        CheckpointManager(tmp_path).load_latest({"g": model}, {"g": optimizer})


# ---------------------------------------------------------------- errors


def test_strict_config_names_differing_keys(tmp_path):
    model, optimizer = build(0)
    manager = CheckpointManager(tmp_path)
    manager.save(1, {"g": model}, {"g": optimizer}, config={"lr": 1e-4, "model": {"width": 32}, "size": (256, 256)})
    with pytest.raises(ValueError, match=r"differing keys: batch, model\.width$"):
        manager.load_latest(
            {"g": model},
            {"g": optimizer},
            strict_config=True,
            config={"lr": 1e-4, "model": {"width": 64}, "size": [256, 256], "batch": 8},
        )
    # same config up to tuple/list: accepted
    manager.load_latest(
        {"g": model},
        {"g": optimizer},
        strict_config=True,
        config={"lr": 1e-4, "model": {"width": 32}, "size": [256, 256]},
    )


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    model, optimizer = build(0)
    path = CheckpointManager(tmp_path).save(1, {"g": model}, {"g": optimizer})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or not a refcolor checkpoint"):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a refcolor checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_model_names_and_shapes_must_match(tmp_path):
    model, optimizer = build(0)
    path = CheckpointManager(tmp_path).save(1, {"g": model}, {"g": optimizer})
    with pytest.raises(ValueError, match=r"models do not match.*not given: \['g'\]"):
        restore_checkpoint(path, {"generator": model}, {"g": optimizer})
    other = nn.Sequential(nn.Linear(4, 9), nn.Dropout(), nn.Linear(9, 1))
    with pytest.raises(ValueError, match=r"model 'g' does not match: size mismatch"):
        restore_checkpoint(path, {"g": other}, {"g": torch.optim.Adam(other.parameters())})


# ---------------------------------------------------------------- Ctrl-C


def test_sigint_saves_once_at_step_boundary_then_raises():
    saves = []
    previous = signal.getsignal(signal.SIGINT)
    with install_interrupt_handler(lambda: saves.append("saved")) as guard:
        guard.check()  # no Ctrl-C yet: nothing happens
        os.kill(os.getpid(), signal.SIGINT)  # handled by the guard: no KeyboardInterrupt mid-step
        assert guard.requested and saves == []
        with pytest.raises(KeyboardInterrupt):
            guard.check()
        with pytest.raises(KeyboardInterrupt):
            guard.check()
    assert saves == ["saved"]
    assert signal.getsignal(signal.SIGINT) is previous


def test_second_sigint_interrupts_immediately():
    saves = []
    with install_interrupt_handler(lambda: saves.append("saved")) as guard:
        guard.handle_signal()
        with pytest.raises(KeyboardInterrupt):
            guard.handle_signal()
    assert saves == []

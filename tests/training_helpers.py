"""Tiny training set-ups shared by the trainer, CLI and distributed tests (fast on a 2-core CPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

from refcolor.data.image_folder import sample_images_dir
from refcolor.train.config import TrainConfig


def small_image_folder(root: Path, count: int = 8, *, with_garbage: bool = False) -> Path:
    """`count` bundled sample PNGs copied into root/images (and one undecodable .png when asked)."""
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(sample_images_dir().glob("*.png"))[:count]:
        shutil.copy(path, folder / path.name)
    if with_garbage:
        (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def tiny_config(tmp_path: Path, model: str = "scft", **overrides) -> TrainConfig:
    settings = {
        "model": model,
        "preset": "small",
        "image_size": 32,
        "data": str(small_image_folder(tmp_path)),
        "out": str(tmp_path / "run"),
        "batch_size": 2,
        "steps": 4,
        "discriminator_channels": 8,
        "num_samples": 2,
        "sample_every": 2,
        "checkpoint_every": 2,
        "log_every": 1,
        "progress": "off",
        "tensorboard": False,
        "device": "cpu",
    }
    settings.update(overrides)
    return TrainConfig(**settings)

"""The training checkpoint file as inference reads it: its format marker, where a run keeps its
checkpoints (run_dir/checkpoints/step_{step:08d}.pt plus a `latest` pointer) and a reader that never
unpickles code (torch.load(weights_only=True)). Writing and exact resume live in
refcolor.train.checkpoint, which builds on this."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch

FORMAT = "refcolor-checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"  # inside a run directory
LATEST_POINTER = "latest"  # a text file in CHECKPOINTS_DIR naming the newest complete checkpoint
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint of a run, by increasing step (temporary files of
    interrupted writes never match the step_*.pt name)."""
    directory = Path(run_dir) / CHECKPOINTS_DIR
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint the `latest` pointer names; if the pointer is missing or stale, the highest
    step on disk; None when the run has none."""
    directory = Path(run_dir) / CHECKPOINTS_DIR
    with contextlib.suppress(OSError):
        named = directory / (directory / LATEST_POINTER).read_text().strip()
        if _STEP_FILE.match(named.name) and named.is_file():
            return named
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint without unpickling code; clear errors for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, garbage bytes, or objects weights_only refuses
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"checkpoint {path} is corrupt or not a refcolor checkpoint: {first_line}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a refcolor checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        found = ckpt.get("format_version")
        raise ValueError(f"checkpoint {path} has format version {found}, expected {FORMAT_VERSION}")
    return ckpt


__all__ = [
    "CHECKPOINTS_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "LATEST_POINTER",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
]

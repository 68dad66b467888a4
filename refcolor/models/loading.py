"""Find and load a trained generator from what a user points at: a run directory, a training
checkpoint (.pt) or an inference weights file (.safetensors). Nothing is unpickled: weights files
are safetensors, checkpoints are read with torch.load(weights_only=True).

Training writes what this reads (model.safetensors and checkpoints in a run directory) and the
inference tools (Colorizer, GuidedColorizer, the CLI) load through it; it imports neither."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from refcolor.models.checkpoint_file import latest_checkpoint, load_checkpoint
from refcolor.models.registry import build_from_metadata
from refcolor.models.weights import load_weights

WEIGHTS_NAME = "model.safetensors"  # the inference weights a training run keeps up to date in its directory


@dataclass
class LoadedModel:
    model: nn.Module  # in eval mode
    kind: str  # "scft" or "guide"
    source: Path  # the file actually read


def resolve_model_file(path: str | os.PathLike) -> Path:
    """The file to load for `path`: itself if a file; for a run directory its model.safetensors,
    else its latest checkpoint."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_file():
        return path
    if (path / WEIGHTS_NAME).is_file():
        return path / WEIGHTS_NAME
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"no {WEIGHTS_NAME} and no checkpoints/step_*.pt in run directory {path}")
    return latest


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> cuda when available, else cpu; otherwise the named device, which must exist."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {str(device)!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return device


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:  # safetensors: 8-byte little-endian header size, then a JSON header
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def load_model(
    path: str | os.PathLike, *, expected_kind: str | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load the generator stored at `path` (see module docstring) in eval mode on `device`.

    Raises FileNotFoundError (nothing there) or ValueError (corrupt file, not a refcolor model,
    weights that do not fit their config, or a model of another kind than `expected_kind`)."""
    file = resolve_model_file(path)
    if _is_safetensors(file):

        def build(meta):
            if expected_kind is not None and meta.get("model") != expected_kind:
                raise ValueError(f"{file} holds a {meta.get('model')!r} model, expected {expected_kind!r}")
            return build_from_metadata(meta)

        model, meta = load_weights(file, build, device=device)
        return LoadedModel(model, meta["model"], file)

    ckpt = load_checkpoint(file, map_location="cpu")
    config = ckpt.get("config") or {}
    kind = config.get("model")
    if expected_kind is not None and kind != expected_kind:
        raise ValueError(f"{file} holds a {kind!r} model, expected {expected_kind!r}")
    state = (ckpt.get("models") or {}).get("generator")
    if state is None or "model_config" not in config:
        raise ValueError(f"{file} is a refcolor checkpoint without a generator and its model config")
    if not isinstance(kind, str):
        raise ValueError(f"{file}: the checkpoint's config must name the model kind ('model'), got {kind!r}")
    try:
        model = build_from_metadata({"model": kind, "model_config": config["model_config"]})
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        detail = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ValueError(f"checkpoint {file}: the generator does not fit its config: {detail}") from err
    return LoadedModel(model.to(device).eval(), kind, file)


__all__ = ["WEIGHTS_NAME", "LoadedModel", "load_model", "resolve_device", "resolve_model_file"]

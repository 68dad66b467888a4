"""Inference weights as safetensors, with the model config in the file's metadata.

Loading reads a JSON header and raw tensor bytes only: nothing is unpickled, so a weights file from
anywhere cannot run code. The model is rebuilt from the stored config by a caller-supplied
build_model(config), so one file is all inference needs. Tied (shared) tensors are stored once by
safetensors' save_model and re-tied by loading into the freshly built model. Floating-point
tensors stored in a narrower dtype (the bundled models are float16: scripts/bundle_model.py) load
into the model's own float32 parameters: load_state_dict copies, and the copy casts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from refcolor.atomic_files import atomic_write

FORMAT_VERSION = "1"
CONFIG_KEY = "refcolor_config"
FORMAT_KEY = "refcolor_format"


def save_weights(
    path: str | os.PathLike, model: nn.Module, config: Mapping, *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write model's weights to `path` (safetensors, atomically) with `config` JSON-encoded in the
    metadata; `metadata` adds string entries of your own (keys starting with "refcolor_" are reserved)."""
    try:
        config_json = json.dumps(dict(config), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"config must be JSON-serializable: {err}") from None
    user = dict(metadata or {})
    reserved = sorted(k for k in user if k.startswith("refcolor_"))
    if reserved:
        raise ValueError(f"metadata keys starting with 'refcolor_' are reserved: {reserved}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in user.items()):
        raise TypeError("metadata keys and values must be strings")
    header = {**user, CONFIG_KEY: config_json, FORMAT_KEY: FORMAT_VERSION}
    # save_model wants a file name, so write to the temporary file by name, then sync it through the handle.
    with atomic_write(path) as tmp:
        save_model(model, tmp.name, metadata=header)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a valid safetensors weights file (corrupt or another format): {err}") from err


def read_config(path: str | os.PathLike) -> dict:
    """The model config stored by save_weights, without loading any tensor."""
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise ValueError(f"{path} has no refcolor config in its metadata (not written by refcolor save_weights)")
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
        found = metadata.get(FORMAT_KEY)
        raise ValueError(f"{path} has refcolor weights format {found!r}, expected {FORMAT_VERSION!r}")
    try:
        return json.loads(metadata[CONFIG_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has an unreadable refcolor config: {err}") from err


def load_weights(
    path: str | os.PathLike,
    build_model: Callable[[dict], nn.Module],
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> tuple[nn.Module, dict]:
    """Build the model from the stored config and load its weights; returns (model in eval mode, config).

    strict=True raises ValueError naming missing and unexpected keys on one line.
    """
    config = read_config(path)
    model = build_model(config).to(device)
    try:
        # load_model accounts for tied tensors stored under one name only.
        missing, unexpected = load_model(model, path, strict=False, device=str(device))
    except SafetensorError as err:  # e.g. header fine but tensor bytes truncated
        raise ValueError(f"{path} is not a valid safetensors weights file: {err}") from err
    except RuntimeError as err:  # shape mismatch from load_state_dict
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        raise ValueError(f"weights {path} do not fit the model built from their config: {detail or err}") from err
    if strict and (missing or unexpected):
        parts = [f"missing keys {sorted(missing)}"] if missing else []
        parts += [f"unexpected keys {sorted(unexpected)}"] if unexpected else []
        raise ValueError(f"weights {path} do not match the model: " + "; ".join(parts))
    return model.eval(), config

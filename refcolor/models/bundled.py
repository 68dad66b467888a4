"""The models that ship inside the package: refcolor/models/pretrained/<kind>.safetensors, each with
its card <kind>.md (see that folder's README.md).

    path = bundled_weights_path("scft")   # FileNotFoundError (one line) when this build has none

The folder is found with importlib.resources, so it is the installed package's own files, from an
editable checkout or a wheel alike. REFCOLOR_PRETRAINED_DIR replaces it (a folder holding
<kind>.safetensors): weights kept outside the package, and the seam the tests use.

The bundled weights are stored as float16 by scripts/bundle_model.py to keep the repository light;
loading casts them back to the model's float32 (refcolor.models.weights.load_weights)."""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import os
from pathlib import Path

from refcolor.models.registry import MODELS, check_kind

PRETRAINED_DIR_ENV = "REFCOLOR_PRETRAINED_DIR"

# Files extracted from a package that is not a plain folder (a zip import) must outlive the call
# that asked for them: they are kept until the interpreter exits, as importlib.resources advises.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def pretrained_dir() -> Path:
    """The folder of the bundled weights and cards: $REFCOLOR_PRETRAINED_DIR, else the package's
    refcolor/models/pretrained."""
    override = os.environ.get(PRETRAINED_DIR_ENV)
    if override:
        return Path(override).expanduser()
    folder = importlib.resources.files("refcolor") / "models" / "pretrained"
    if isinstance(folder, Path):  # installed as plain files: every install pip makes
        return folder
    return _extracted.enter_context(importlib.resources.as_file(folder))


def bundled_file(kind: str, suffix: str) -> Path:
    return pretrained_dir() / f"{check_kind(kind)}{suffix}"


def bundled_weights_path(kind: str) -> Path:
    """refcolor/models/pretrained/<kind>.safetensors (kind: "scft" or "guide").

    Raises FileNotFoundError, one line naming the kind, the path and how to get weights, when the
    file is absent, and ValueError for an unknown kind."""
    path = bundled_file(kind, ".safetensors")
    if not path.is_file():
        raise FileNotFoundError(
            f"no bundled {kind!r} model: {path} is missing (this refcolor build ships without it); "
            f"install a refcolor release that bundles it, point {PRETRAINED_DIR_ENV} at a folder holding "
            f"{kind}.safetensors, or train one (scripts/train_bundled.sh {kind}) and pass --checkpoint RUN_DIR"
        )
    return path


def checkpoint_or_bundled(checkpoint: str | os.PathLike | None, kind: str) -> str | os.PathLike:
    """What a command loads: the --checkpoint it was given, else the bundled weights of `kind`."""
    return bundled_weights_path(kind) if checkpoint is None else checkpoint


def bundled_card_path(kind: str) -> Path:
    """refcolor/models/pretrained/<kind>.md: the model card of the bundled weights."""
    return bundled_file(kind, ".md")


def bundled_kinds() -> list[str]:
    """The model kinds whose weights this install bundles."""
    return [kind for kind in sorted(MODELS) if bundled_file(kind, ".safetensors").is_file()]


__all__ = [
    "PRETRAINED_DIR_ENV",
    "bundled_card_path",
    "bundled_kinds",
    "bundled_weights_path",
    "checkpoint_or_bundled",
    "pretrained_dir",
]

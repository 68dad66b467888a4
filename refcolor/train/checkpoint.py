"""Training checkpoints that survive crashes, kills and Ctrl-C, and resume a run exactly.

A checkpoint is a plain dict saved with torch.save and loaded with torch.load(weights_only=True):
it holds only tensors, numbers, strings and containers of them, so loading a checkpoint never runs
arbitrary pickled code. That is why the RNG states are converted to lists and tensors explicitly and
why the config must be JSON-like.

Exact resume means the run continues as if it had never stopped: the models and optimisers (Adam
moments, step counts), the GradScaler, the step, and every RNG a training step draws from (python
`random`, numpy's global RNG, torch's CPU RNG, every CUDA device's RNG, and any torch.Generator
passed by name, e.g. the augmentation's). Not covered: numpy `Generator` objects (np.random.default_rng)
and data-loader worker state; a trainer derives those from the step or from the RNGs above.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refcolor.atomic_files import atomic_save, atomic_write
from refcolor.models.checkpoint_file import (
    CHECKPOINTS_DIR,
    FORMAT,
    FORMAT_VERSION,
    LATEST_POINTER,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)

# ----------------------------------------------------------------------------------------------
# RNG states, as weights_only-loadable values
# ----------------------------------------------------------------------------------------------


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict:
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)  # noqa: NPY002  the global RNG is what a resume must carry
    return {
        "python": [version, list(internal), gauss_next],
        # numpy's state holds an ndarray, which weights_only refuses: store plain ints/floats.
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def restore_rng_state(state: dict, generators: Mapping[str, torch.Generator] | None = None) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))  # noqa: NPY002  see capture_rng_state
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(
                f"checkpoint has RNG states for {len(state['cuda'])} CUDA devices, "
                f"this machine has {torch.cuda.device_count()}"
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    saved = state["generators"]
    generators = generators or {}
    _require_same_names("generator", saved, generators)
    for name, g in generators.items():
        g.set_state(saved[name].cpu())


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def _require_same_names(what: str, saved: Mapping, given: Mapping) -> None:
    missing, unexpected = sorted(set(saved) - set(given)), sorted(set(given) - set(saved))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {what}s do not match: saved {sorted(saved)}, given {sorted(given)}"
            + (f"; not given: {missing}" if missing else "")
            + (f"; not in checkpoint: {unexpected}" if unexpected else "")
        )


def _json_like(config: Mapping, what: str = "config") -> dict:
    # JSON-like configs load under weights_only and compare reliably (a tuple equals its list).
    try:
        return json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serializable (str, numbers, bools, None, lists, dicts): {err}") from None


def config_differences(saved: Any, given: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like configs (nested dicts compared per key)."""
    if isinstance(saved, dict) and isinstance(given, dict):
        diffs = []
        for key in sorted(set(saved) | set(given), key=str):
            name = f"{prefix}{key}"
            if key not in saved or key not in given:
                diffs.append(name)
            else:
                diffs += config_differences(saved[key], given[key], name + ".")
        return diffs
    return [] if saved == given else [prefix.rstrip(".") or "<config>"]


def make_checkpoint(
    step: int,
    models: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None = None,
    config: Mapping | None = None,
    extra: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
) -> dict:
    """Everything needed to resume exactly, as a weights_only-loadable dict.

    Call it at a step boundary (after optimizer.step, before the next batch is drawn), with the
    number of completed steps. `extra` must itself be weights_only-loadable (tensors, numbers,
    strings, containers).
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "config": _json_like(config or {}),
        "models": {name: m.state_dict() for name, m in models.items()},
        "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": capture_rng_state(generators),
        "extra": extra,
    }


def restore_checkpoint(
    path: str | os.PathLike,
    models: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None = None,
    *,
    generators: Mapping[str, torch.Generator] | None = None,
    config: Mapping | None = None,
    strict_config: bool = False,
    map_location: Any = "cpu",
    restore_rng: bool = True,
    checkpoint: dict | None = None,
) -> dict:
    """Load `path` into the given models, optimisers, scaler, RNGs and generators (in place).

    Returns the checkpoint dict; its "step", "config" and "extra" tell the trainer where to go on.
    strict_config=True raises ValueError naming every key where `config` differs from the saved one.
    The format, config and name checks run before anything is modified. `checkpoint`: the dict
    load_checkpoint(path) already returned, when the caller has read it (it is not read again).
    """
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(path, map_location)
    if strict_config:
        diffs = config_differences(ckpt["config"], _json_like(config or {}))
        if diffs:
            raise ValueError(f"checkpoint {path} was saved with a different config; differing keys: {', '.join(diffs)}")
    _require_same_names("model", ckpt["models"], models)
    _require_same_names("optimizer", ckpt["optimizers"], optimizers)
    if restore_rng:
        _require_same_names("generator", ckpt["rng"]["generators"], generators or {})
    for name, model in models.items():
        try:
            model.load_state_dict(ckpt["models"][name])
        except RuntimeError as err:  # torch's message spans lines; keep it on one for CLI errors
            detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
            raise ValueError(f"checkpoint {path}: model {name!r} does not match: {detail or err}") from err
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(ckpt["optimizers"][name])
    if scaler is not None and ckpt["scaler"] is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        restore_rng_state(ckpt["rng"], generators)
    return ckpt


class CheckpointManager:
    """Checkpoints of one run: run_dir/checkpoints/step_{step:08d}.pt plus a `latest` pointer.

    The pointer is written (atomically) only after its checkpoint is complete, so it never names a
    partial file; if it is missing or stale, the highest step on disk is used. Pruning keeps the
    checkpoint just saved plus the keep_last - 1 highest other steps (None keeps all).
    """

    def __init__(self, run_dir: str | os.PathLike, keep_last: int | None = 3):
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.directory = self.run_dir / CHECKPOINTS_DIR
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return checkpoint_path(self.run_dir, step)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint, by increasing step."""
        return list_checkpoints(self.run_dir)

    def save(self, step: int, models, optimizers, scaler=None, config=None, extra=None, generators=None) -> Path:
        path = self.path_for(step)
        atomic_save(make_checkpoint(step, models, optimizers, scaler, config, extra, generators), path)
        with atomic_write(self.directory / LATEST_POINTER, "w") as f:
            f.write(path.name + "\n")
        self._prune(keep=path)
        return path

    def _prune(self, keep: Path) -> None:
        if self.keep_last is None:
            return
        others = [p for _, p in self.checkpoints() if p != keep]
        for stale in others[: max(0, len(others) - (self.keep_last - 1))]:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def latest_path(self) -> Path | None:
        return latest_checkpoint(self.run_dir)

    def load_latest(self, models, optimizers, scaler=None, **kwargs) -> dict:
        """restore_checkpoint from the latest checkpoint; FileNotFoundError when there is none."""
        path = self.latest_path()
        if path is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        return restore_checkpoint(path, models, optimizers, scaler, **kwargs)


# ----------------------------------------------------------------------------------------------
# Ctrl-C
# ----------------------------------------------------------------------------------------------


class InterruptGuard:
    """Turns the first Ctrl-C into "save at the next step boundary, then raise KeyboardInterrupt".

    Saving inside the signal handler itself could capture a half-applied optimizer step, so the
    handler only records the request; the training loop calls check() after each completed step.
    A second Ctrl-C raises KeyboardInterrupt at once (the user insists; no save).
    """

    def __init__(self, save_fn: Callable[[], Any]):
        self.save_fn = save_fn
        self.requested = False
        self.saved = False

    def handle_signal(self, signum=None, frame=None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """At a step boundary: if Ctrl-C was pressed, save once and raise KeyboardInterrupt."""
        if self.requested:
            if not self.saved:
                self.saved = True  # set first: a failing save must not be retried on the way out
                self.save_fn()
            raise KeyboardInterrupt


@contextlib.contextmanager
def install_interrupt_handler(save_fn: Callable[[], Any]) -> Iterator[InterruptGuard]:
    """Context manager: SIGINT is handled by an InterruptGuard (see there); the previous handler
    is restored on exit. Signal handlers can only be set from the main thread; elsewhere nothing
    is installed and the guard's check() never fires unless handle_signal() is called."""
    guard = InterruptGuard(save_fn)
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.signal(signal.SIGINT, guard.handle_signal)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGINT, previous)

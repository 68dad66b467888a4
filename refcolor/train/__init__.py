"""Training: the shared GAN trainer (Trainer, TrainConfig, train; loaded on first use), crash-safe
checkpoints for exact resume, and (from refcolor.models.weights) pickle-free inference weights."""

from refcolor.atomic_files import atomic_save, atomic_write
from refcolor.models.weights import load_weights, read_config, save_weights
from refcolor.train.checkpoint import (
    CheckpointManager,
    InterruptGuard,
    capture_rng_state,
    config_differences,
    install_interrupt_handler,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    restore_rng_state,
)

_LAZY = {"Trainer": "trainer", "train": "trainer", "TrainConfig": "config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"refcolor.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'refcolor.train' has no attribute {name!r}")


__all__ = [
    "CheckpointManager",
    "TrainConfig",
    "Trainer",
    "InterruptGuard",
    "atomic_save",
    "atomic_write",
    "capture_rng_state",
    "config_differences",
    "install_interrupt_handler",
    "load_checkpoint",
    "load_weights",
    "make_checkpoint",
    "read_config",
    "restore_checkpoint",
    "restore_rng_state",
    "save_weights",
    "train",
]

"""Training building blocks: crash-safe checkpoints for exact resume, and pickle-free inference weights."""
from refcolor.train.checkpoint import (
    CheckpointManager,
    InterruptGuard,
    atomic_save,
    atomic_write,
    capture_rng_state,
    config_differences,
    install_interrupt_handler,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    restore_rng_state,
)
from refcolor.train.weights import load_weights, read_config, save_weights

__all__ = [
    "CheckpointManager",
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
]

"""DataLoader set-up that keeps a GPU fed and is reproducible with a seed.

Workers only decode and resize (`ImageFolder`); the per-batch augmentation
(`AugmentedSelfReference`: colour jitter, TPS warp, sketch extraction) runs on the training device
inside the training step, on the whole batch at once: it is far faster there than in CPU workers,
and it keeps workers light so a few of them saturate the GPU. Typical step::

    loader = make_loader(ImageFolder(root, 256), 16, device="cuda", seed=0)
    for batch in loader:
        batch = to_device(batch, "cuda")               # async copy from pinned memory
        data = augment(batch["image"])                 # on the GPU
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def _seed_worker(worker_id: int) -> None:
    # torch.initial_seed() is the worker's seed (loader base seed + worker id). torch already
    # seeds `random` and numpy with it; doing it here as well keeps the contract explicit.
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  the global RNG that third-party augmentations draw from


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    drop_last: bool = True,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader over `dataset`: `num_workers` processes (default min(8, CPU count)); pinned
    host memory when `device` is CUDA (so `to_device(..., non_blocking=True)` overlaps the copy
    with compute); shuffling from a `torch.Generator` seeded with `seed`, which also seeds every
    worker (torch, numpy, random), so two loaders with the same seed yield the same batches,
    with or without workers. `persistent_workers` (default: True when there are workers) keeps
    workers alive between epochs instead of re-forking them. `drop_last` keeps batch shapes fixed."""
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    pin = device is not None and torch.device(device).type == "cuda"
    # Without workers, DataLoader refuses persistent workers and a prefetch factor.
    persistent = num_workers > 0 and (True if persistent_workers is None else persistent_workers)
    prefetch = prefetch_factor if num_workers > 0 else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker,
        persistent_workers=persistent,
        prefetch_factor=prefetch,
    )


def to_device(batch, device: str | torch.device, non_blocking: bool = True):
    """`batch` (a dict, list or tuple of tensors, nested, or a tensor) with every tensor moved to
    `device`; other values (e.g. paths) are kept as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in batch]
        return moved if isinstance(batch, list) else tuple(moved)
    return batch

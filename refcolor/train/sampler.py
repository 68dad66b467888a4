"""StepBatchSampler: the batches of a run as a function of the step, so a resumed run (or another
rank) draws exactly the batches an uninterrupted run would have drawn.

Epoch e is a permutation of the dataset from a generator seeded with (seed, e), split across ranks
like torch's DistributedSampler (rank r takes positions r, r + world, ...; the tail that does not
fill a global batch is dropped); step s reads epoch s // steps_per_epoch at batch s % steps_per_epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class StepBatchSampler(torch.utils.data.Sampler):
    """An endless batch sampler starting at `start_step` (pass as DataLoader(batch_sampler=...))."""

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
        shuffle: bool = True,
    ):
        if dataset_size < batch_size * world_size:
            raise ValueError(
                f"the dataset has {dataset_size} images, fewer than one global batch "
                f"(batch size {batch_size} x {world_size} processes)"
            )
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.start_step, self.shuffle = start_step, shuffle
        self.steps_per_epoch = dataset_size // (batch_size * world_size)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's indices for `epoch` (steps_per_epoch * batch_size of them)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.dataset_size, generator=g)
        else:
            order = torch.arange(self.dataset_size)
        used = order[: self.steps_per_epoch * self.batch_size * self.world_size]
        return used[self.rank :: self.world_size]

    def batch_at(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        return self.epoch_order(epoch)[k * self.batch_size : (k + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        epoch = step // self.steps_per_epoch
        order = self.epoch_order(epoch)
        while True:
            e, k = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, order = e, self.epoch_order(e)
            yield order[k * self.batch_size : (k + 1) * self.batch_size].tolist()
            step += 1


__all__ = ["StepBatchSampler"]

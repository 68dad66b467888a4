"""The bounded inference queue: model calls run on one worker thread, off the event loop, so the
server keeps answering (health, static files, 503s) while a colorization runs. At most `capacity`
jobs wait or run; one more is refused at once (QueueFull -> 503) instead of piling up latency and
memory. One thread, because the models share the CPU's cores (torch parallelises each call) or one
GPU: concurrent calls would only compete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


class QueueFull(Exception):
    """The inference queue holds `capacity` jobs already."""


class InferenceQueue:
    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"InferenceQueue: capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.pending = 0  # only touched on the event loop's thread: no lock needed
        self.served = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refcolor-inference")

    async def run(self, fn: Callable[[], T]) -> tuple[T, float, float]:
        """Run fn() on the worker thread -> (its result, seconds waited in the queue, seconds run).
        QueueFull at once when `capacity` jobs are pending."""
        if self.pending >= self.capacity:
            raise QueueFull(f"the server is busy: {self.pending} colorizations queued (limit {self.capacity})")
        loop = asyncio.get_running_loop()
        self.pending += 1
        queued = time.perf_counter()
        started: list[float] = []

        def timed() -> T:
            started.append(time.perf_counter())
            with torch.inference_mode():  # no autograd bookkeeping, whatever the model code does
                return fn()

        def finished(_) -> None:  # when the job really ends (or is cancelled before it starts)
            loop.call_soon_threadsafe(self._finished)

        job = self._executor.submit(timed)
        job.add_done_callback(finished)
        result = await asyncio.wrap_future(job)
        done = time.perf_counter()
        return result, started[0] - queued, done - started[0]

    def _finished(self) -> None:
        self.pending -= 1
        self.served += 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

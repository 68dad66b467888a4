"""Progress display and metric logs of a training run (rank 0 only).

ProgressBar: a one-line bar redrawn in place on a terminal, or plain lines every log_every steps
when stderr is a file (CI, nohup), with the step, losses, images/s and the time left.
MetricLog: metrics.jsonl in the run directory (always) and TensorBoard scalars and images (when
the tensorboard package is installed).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TextIO

import torch


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    def __init__(
        self,
        total: int,
        start: int,
        *,
        mode: str = "auto",
        log_every: int = 10,
        stream: TextIO | None = None,
        width: int = 20,
    ):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.total, self.start, self.log_every, self.width = mode, total, start, log_every, width
        self._last_draw = 0.0

    def update(self, step: int, losses: dict[str, float], images_per_s: float, eta_s: float) -> None:
        """`step` completed steps so far."""
        if self.mode == "off":
            return
        fraction = step / self.total if self.total else 1.0
        loss_text = " ".join(f"{k} {v:.3g}" for k, v in losses.items())
        text = (
            f"step {step}/{self.total} ({100 * fraction:.0f}%) | {loss_text} | "
            f"{images_per_s:.1f} img/s | eta {_format_duration(eta_s)}"
        )
        if self.mode == "bar":
            now = time.monotonic()
            if now - self._last_draw < 0.1 and step < self.total:
                return
            self._last_draw = now
            filled = int(round(self.width * fraction))
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
        elif step % self.log_every == 0 or step == self.total:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that does not get overwritten by the bar."""
        if self.mode == "off":
            return
        self.stream.write(("\r\x1b[K" if self.mode == "bar" else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()


class MetricLog:
    def __init__(self, run_dir: Path, *, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)  # kept open for the run, line-buffered
        self.writer = None
        self.tensorboard_error: str | None = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is optional
                self.tensorboard_error = str(err)
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, tag: str, image: torch.Tensor) -> None:
        """(3, H, W) in [0, 1], TensorBoard only (the PNG grids are written by the trainer)."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step)

    def close(self) -> None:
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl (a torn last line from a crash is ignored)."""
    records = []
    with open(Path(run_dir) / "metrics.jsonl") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


__all__ = ["MetricLog", "ProgressBar", "read_metrics"]

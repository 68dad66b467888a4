"""Crash-safe file writes: readers see the old file or the complete new one, never a partial write.
Used by training checkpoints, sample grids and safetensors weights alike."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk (POSIX); not possible on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to `path`; on success it is fsynced and renamed onto `path`.

    Readers see either the old file or the complete new one, never a partial write. On any failure,
    KeyboardInterrupt included, the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as `path`: os.replace is only atomic within one file system. Closed below, inside
    # the try, so that the cleanup also covers the close.
    tmp = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(path.parent)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save(obj, path) atomically: a crash or Ctrl-C mid-write leaves the old file intact."""
    with atomic_write(path) as f:
        torch.save(obj, f)


__all__ = ["atomic_save", "atomic_write"]

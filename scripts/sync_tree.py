#!/usr/bin/env python3
"""Mirrors a checkout's files (git's tracked and untracked-but-not-ignored ones) into a build copy,
writing only the files whose content differs: those get a new modification time, so that ninja
recompiles exactly what changed, however old the edit; unchanged files keep theirs. Files gone from
the checkout are removed from the copy (build outputs, *.so and build/, are kept).

    python scripts/sync_tree.py CHECKOUT COPY [--exclude PREFIX ...]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
from pathlib import Path


def checkout_files(root: Path) -> list[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the obvious outputs
        skip = {".git", ".venv", "build", "__pycache__"}
        found = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in skip]
            found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
        return found


def sync(root: Path, copy: Path, exclude: tuple[str, ...] = ()) -> int:
    """Returns the number of files written."""
    keep, written = set(), 0
    for name in checkout_files(root):
        if name.startswith(exclude):
            continue
        source, target = root / name, copy / name
        if source.is_symlink() or not source.is_file():  # links (refcolor/kernels) and deleted files
            continue
        keep.add(name)
        if target.is_file() and not target.is_symlink() and filecmp.cmp(source, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copyfile(source, target)
        written += 1
    for folder, dirs, names in os.walk(copy):
        rel = Path(folder).relative_to(copy)
        dirs[:] = [d for d in dirs if not (rel == Path(".") and d == "build")]
        for n in names:
            name = str(rel / n) if rel != Path(".") else n
            if name not in keep and not n.endswith(".so") and not (Path(folder) / n).is_symlink():
                (Path(folder) / n).unlink()
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("copy", type=Path)
    parser.add_argument("--exclude", action="append", default=[], help="path prefix to leave out")
    args = parser.parse_args()
    count = sync(args.checkout, args.copy, tuple(args.exclude))
    print(f"sync_tree: {count} changed file(s) written to {args.copy}")

#!/usr/bin/env python3
"""Prints the torch floor of pyproject.toml (`torch>=X` in [build-system] requires and in
[project] dependencies, which must agree): the version scripts/cuda_build_check.sh builds the CUDA
extension against, so the declared floor is one that is proven to build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def torch_floor(path: Path = PYPROJECT) -> str:
    data = tomllib.loads(path.read_text())
    lists = {
        "[build-system] requires": data["build-system"]["requires"],
        "[project] dependencies": data["project"]["dependencies"],
    }
    floors = {}
    for where, requirements in lists.items():
        found = [re.fullmatch(r"torch\s*>=\s*([0-9][0-9.]*)", r.split(";")[0].strip()) for r in requirements]
        found = [m.group(1) for m in found if m]
        if len(found) != 1:
            raise SystemExit(f"{path.name}: {where} must hold one `torch>=X` requirement, found {len(found)}")
        floors[where] = found[0]
    if len(set(floors.values())) != 1:
        raise SystemExit(f"{path.name}: torch floors differ: {floors}")
    return next(iter(floors.values()))


if __name__ == "__main__":
    print(torch_floor(Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT))

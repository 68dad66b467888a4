#!/usr/bin/env python3
"""Checks, in a CUDA build of refcolor (run by scripts/cuda_build_check.sh from the source root),
that `import refcolor` works and that every CUDA op of the sources is registered with torch's
dispatcher. The ops are read from the sources, so a new op is checked as soon as it has a
csrc/<op>/cuda/*.cu: every schema its csrc/<op>/*.cpp defines (host-emulation test ops aside) and
every name its csrc/<op>/cuda/*.cpp registers must have a CUDA kernel. Needs no GPU."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def expected_cuda_ops(root: Path = ROOT) -> dict[str, list[str]]:
    """{op directory: [op names that must have a CUDA kernel]} for every csrc/<op>/cuda/*.cu."""
    out = {}
    for op_dir in sorted({p.parent.parent for p in (root / "csrc").glob("*/cuda/*.cu")}):
        defined = re.findall(r'm\.def\(\s*"(\w+)\(', "\n".join(p.read_text() for p in op_dir.glob("*.cpp")))
        registered = re.findall(r'm\.impl\(\s*"(\w+)"', "\n".join(p.read_text() for p in op_dir.glob("cuda/*.cpp")))
        names = {n for n in defined if "emulation" not in n} | set(registered)
        out[op_dir.name] = sorted(names)
    return out


def main() -> int:
    import torch

    import refcolor
    from refcolor import _extension

    if not _extension.has_cuda_kernels():
        print(f"cuda_dispatch_check: refcolor._C has no CUDA kernels ({_extension.load_error()})", file=sys.stderr)
        return 1
    built = _extension.compiled_module().torch_version()  # type: ignore[union-attr]
    if built != torch.__version__.split("+")[0]:
        print(f"cuda_dispatch_check: refcolor._C reports torch {built}, not {torch.__version__}", file=sys.stderr)
        return 1
    expected = expected_cuda_ops()
    if not expected:
        print("cuda_dispatch_check: no csrc/*/cuda/*.cu found", file=sys.stderr)
        return 1
    missing = []
    for op_dir, names in expected.items():
        if not names:
            missing.append(f"csrc/{op_dir}: has CUDA sources but defines no op")
        for name in names:
            ok = torch._C._dispatch_has_kernel_for_dispatch_key(f"refcolor::{name}", "CUDA")
            print(f"  {op_dir:24s} refcolor::{name:40s} CUDA kernel: {'registered' if ok else 'MISSING'}")
            if not ok:
                missing.append(f"refcolor::{name} (csrc/{op_dir}) has no CUDA kernel in the dispatcher")
    for line in missing:
        print(f"cuda_dispatch_check: {line}", file=sys.stderr)
    count = sum(map(len, expected.values()))
    print(f"cuda_dispatch_check: refcolor {refcolor.__file__}, {count} CUDA ops of {len(expected)} op(s) checked")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

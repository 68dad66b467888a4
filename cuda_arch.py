"""The CUDA architectures refcolor's extension is built for (loaded by setup.py; imports no torch).

torch's extension builder compiles for TORCH_CUDA_ARCH_LIST, else for the GPUs it sees; with neither
(FORCE_CUDA=1 in a container or on a build machine) it fails with an IndexError. `arch_list` gives
it a default then, and rejects architectures below the kernels' minimum.
"""

from __future__ import annotations

import os
import re
import subprocess

# tps_warp's backward adds float64 gradients with atomicAdd(double *, double), which needs sm_60.
MIN_ARCH = (6, 0)
# Without a list and without a visible GPU: Turing (T4), Ampere (A100; its cubin also runs on sm_86
# and sm_89: A10, RTX 30xx/40xx, L4, L40), Hopper (H100/H200), Blackwell (B200), and PTX of the last
# for newer GPUs to compile at load time. Entries nvcc cannot build are left out.
DEFAULT_ARCHS = ("7.5", "8.0", "9.0", "10.0")
# torch's named entries (torch.utils.cpp_extension), as the versions they stand for.
NAMED_ARCHS = {
    "Kepler+Tesla": "3.7",
    "Kepler": "3.5",
    "Maxwell+Tegra": "5.3",
    "Maxwell": "5.0;5.2",
    "Pascal": "6.0;6.1",
    "Volta+Tegra": "7.2",
    "Volta": "7.0",
    "Turing": "7.5",
    "Ampere+Tegra": "8.7",
    "Ampere": "8.0;8.6",
    "Ada": "8.9",
    "Hopper": "9.0",
}


def _version(entry: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)[af]?(\+PTX)?", entry.strip())
    if match is None:
        raise ValueError(f"TORCH_CUDA_ARCH_LIST: expected entries like 8.0, 9.0a or 10.0+PTX, got {entry!r}")
    return int(match.group(1)), int(match.group(2))


def nvcc_archs(cuda_home: str | None) -> set[str] | None:
    """The real architectures nvcc can build ("8.0", ...), or None if nvcc cannot be asked."""
    if not cuda_home:
        return None
    try:
        out = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-code"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {f"{int(m[:-1])}.{m[-1]}" for m in re.findall(r"sm_(\d+)", out)}


def arch_list(requested: str | None, gpu_visible: bool, buildable: set[str] | None) -> str | None:
    """TORCH_CUDA_ARCH_LIST for the build: `requested` checked against MIN_ARCH; else None when a GPU
    is visible (torch builds for it); else DEFAULT_ARCHS that nvcc can build, PTX on the last."""
    if requested:
        entries = [e for part in requested.replace(",", ";").split(";") for e in part.split() if e]
        for entry in entries:
            name = entry.removesuffix("+PTX")
            for version in NAMED_ARCHS.get(name, name).split(";"):
                if _version(version) < MIN_ARCH:
                    raise ValueError(
                        f"TORCH_CUDA_ARCH_LIST: refcolor's CUDA kernels need compute capability >= "
                        f"{MIN_ARCH[0]}.{MIN_ARCH[1]} (atomicAdd on double), got {entry!r}"
                    )
        return requested
    if gpu_visible:
        return None
    archs = [a for a in DEFAULT_ARCHS if buildable is None or a in buildable]
    if not archs:
        raise ValueError(
            f"nvcc builds none of refcolor's default CUDA architectures {DEFAULT_ARCHS}; set TORCH_CUDA_ARCH_LIST"
        )
    return ";".join([*archs[:-1], archs[-1] + "+PTX"])

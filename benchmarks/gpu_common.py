"""Shared by the GPU benchmark scripts: the copy-bandwidth floor and the results file."""
from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

RESULTS = Path(__file__).parent / "results"


def require_gpu(script: str) -> str:
    if not torch.cuda.is_available():
        raise SystemExit(f"{script}: no CUDA device")
    return torch.cuda.get_device_name()


def copy_bandwidth() -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read and written."""
    src = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # 256 MiB
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200)
    return 2 * src.numel() / (ms * 1e-3)


def time_ms(fn) -> float:
    return do_bench(fn, warmup=25, rep=200)


def write_results(out_dir: Path, op: str, rows: list[dict], bandwidth: float) -> Path:
    """Merge `rows` under `op` into <out_dir>/<device>.json (other ops' entries are kept)."""
    device = torch.cuda.get_device_name()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", device).strip("_") + ".json")
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"device": device, "torch": torch.__version__, "triton": triton.__version__,
                   "cuda": torch.version.cuda, "python": platform.python_version(),
                   "copy_bandwidth_bytes_per_s": bandwidth})
    result[op] = rows
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path

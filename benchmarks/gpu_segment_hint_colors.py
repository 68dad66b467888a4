"""GPU benchmark of segment_hint_colors: time of each backend and its share of the memory floor.

    python benchmarks/gpu_segment_hint_colors.py [--out benchmarks/results]

The floor is the bytes the op must move (each input read once, each output written once, inactive
segments neither read nor written) divided by the measured device-to-device copy bandwidth. Results
go to benchmarks/results/<device>.json (merged with other ops' entries already there)."""
from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

import refcolor
from refcolor.ops import segment_hint_colors

B, NC, C, H, W = 8, 30, 3, 256, 256


def copy_bandwidth(device="cuda") -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read and written."""
    src = torch.empty(1 << 28, dtype=torch.uint8, device=device)  # 256 MiB
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200)
    return 2 * src.numel() / (ms * 1e-3)


def floor_bytes(dtype: torch.dtype, direction: str) -> int:
    e = torch.finfo(dtype).bits // 8
    P = H * W
    forward = e * B * P * (NC + C) + e * B * P * (C + 1)  # read S, Y; write hints, mask
    backward = e * B * P * (C + 1 + NC + C) + e * B * P * (NC + C)  # read gH, gM, S, Y; write dS, dY
    return forward if direction == "forward" else forward + backward


def bench(backend: str, dtype: torch.dtype, direction: str) -> float:
    labels = torch.randint(0, NC, (B, H, W), device="cuda")
    S = torch.nn.functional.one_hot(labels, NC).permute(0, 3, 1, 2).to(dtype).contiguous()
    Y = torch.rand(B, C, H, W, device="cuda", dtype=dtype)
    nh = torch.full((B,), NC, device="cuda")
    if direction == "forward":
        def fn():
            with torch.no_grad():
                segment_hint_colors(S, Y, nh, backend=backend)
    else:
        S.requires_grad_()
        Y.requires_grad_()
        gH, gM = torch.randn(B, C, H, W, device="cuda", dtype=dtype), torch.randn(B, 1, H, W, device="cuda", dtype=dtype)

        def fn():
            hints, mask = segment_hint_colors(S, Y, nh, backend=backend)
            torch.autograd.grad([hints, mask], [S, Y], [gH, gM])
    return do_bench(fn, warmup=25, rep=200)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_segment_hint_colors.py: no CUDA device")
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    print(f"{device}: copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for direction in ("forward", "forward_backward"):
            floor_ms = floor_bytes(dtype, direction) / bandwidth * 1e3
            for backend in refcolor.available_backends("cuda"):
                ms = bench(backend, dtype, direction)
                row = {"op": "segment_hint_colors", "backend": backend, "dtype": str(dtype).replace("torch.", ""),
                       "direction": direction, "shape": f"B={B} Nc={NC} C={C} {H}x{W} one-hot Nh=Nc",
                       "ms": round(ms, 4), "floor_ms": round(floor_ms, 4), "pct_of_floor": round(100 * floor_ms / ms, 1)}
                rows.append(row)
                print(f"{row['dtype']:9} {direction:17} {backend:9} {ms:8.3f} ms   floor {floor_ms:.3f} ms   "
                      f"{row['pct_of_floor']:5.1f}% of floor")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (re.sub(r"[^A-Za-z0-9._-]+", "_", device).strip("_") + ".json")
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"device": device, "torch": torch.__version__, "triton": triton.__version__,
                   "cuda": torch.version.cuda, "python": platform.python_version(),
                   "copy_bandwidth_bytes_per_s": bandwidth})
    result["segment_hint_colors"] = rows
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

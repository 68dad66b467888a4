"""GPU benchmark of segment_hint_colors: time of each backend and its share of the memory floor.

    python -m benchmarks.gpu_segment_hint_colors [--out benchmarks/results]

The floor is the bytes the op must move (each input read once, each output written once, inactive
segments neither read nor written) divided by the measured device-to-device copy bandwidth."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import refcolor
from benchmarks.gpu_common import RESULTS, copy_bandwidth, require_gpu, time_ms, write_results
from refcolor.ops import segment_hint_colors

B, NC, C, H, W = 8, 30, 3, 256, 256


def floor_bytes(dtype: torch.dtype, direction: str) -> int:
    e = torch.finfo(dtype).bits // 8
    P = H * W
    forward = e * B * P * (NC + C) + e * B * P * (C + 1)  # read S, Y; write hints, mask
    backward = e * B * P * (C + 1 + NC + C) + e * B * P * (NC + C)  # read gH, gM, S, Y; write dS, dY
    return forward if direction == "forward" else forward + backward


def step(backend: str, dtype: torch.dtype, direction: str):
    labels = torch.randint(0, NC, (B, H, W), device="cuda")
    S = torch.nn.functional.one_hot(labels, NC).permute(0, 3, 1, 2).to(dtype).contiguous()
    Y = torch.rand(B, C, H, W, device="cuda", dtype=dtype)
    nh = torch.full((B,), NC, device="cuda")
    if direction == "forward":
        def fn():
            with torch.no_grad():
                segment_hint_colors(S, Y, nh, backend=backend)
        return fn
    S.requires_grad_()
    Y.requires_grad_()
    gH = torch.randn(B, C, H, W, device="cuda", dtype=dtype)
    gM = torch.randn(B, 1, H, W, device="cuda", dtype=dtype)

    def fn():
        hints, mask = segment_hint_colors(S, Y, nh, backend=backend)
        torch.autograd.grad([hints, mask], [S, Y], [gH, gM])
    return fn


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = require_gpu("gpu_segment_hint_colors.py")
    bandwidth = copy_bandwidth()
    print(f"{device}: copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for direction in ("forward", "forward_backward"):
            floor_ms = floor_bytes(dtype, direction) / bandwidth * 1e3
            for backend in refcolor.available_backends("cuda"):
                ms = time_ms(step(backend, dtype, direction))
                rows.append({"backend": backend, "dtype": str(dtype).replace("torch.", ""), "direction": direction,
                             "shape": f"B={B} Nc={NC} C={C} {H}x{W} one-hot Nh=Nc", "ms": round(ms, 4),
                             "floor_ms": round(floor_ms, 4), "pct_of_floor": round(100 * floor_ms / ms, 1)})
                print(f"{rows[-1]['dtype']:9} {direction:17} {backend:9} {ms:8.3f} ms   floor {floor_ms:.3f} ms   "
                      f"{rows[-1]['pct_of_floor']:5.1f}% of floor")
    print(f"wrote {write_results(args.out, 'segment_hint_colors', rows, bandwidth)}")


if __name__ == "__main__":
    main()

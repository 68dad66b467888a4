"""GPU benchmark of segment_hint_colors: each backend's time and its share of the memory floor.

    python -m benchmarks.gpu_segment_hint_colors [--out benchmarks/results] [--smoke]

Segments are one-hot (B=8, Nc=30, 256x256, every segment hinted), built the common way,
`one_hot(labels, Nc).permute(0, 3, 1, 2)`: "channels_last" keeps that tensor's strides, "contiguous"
copies it first. The floor is the bytes the op must move (each input read once, each output written
once) over the copy bandwidth measured on the spot. Target (issue 11): the fastest of refcolor's
kernels (cuda, triton) at >= 70% of that floor, per dtype, direction and layout."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import refcolor
from benchmarks.gpu_common import (
    RESULTS,
    describe_floors,
    device_name,
    device_of,
    figure,
    find,
    floor_target,
    measure_floors,
    refused,
    time_ms,
    write_section,
)
from refcolor.ops import segment_hint_colors

SHAPE = {"B": 8, "Nc": 30, "C": 3, "H": 256, "W": 256}
SMOKE_SHAPE = {"B": 2, "Nc": 5, "C": 3, "H": 16, "W": 16}
KERNELS = ("cuda", "triton", "cpp")  # refcolor's own (cpp: CPU smoke runs only); "reference" is timed beside them
TARGET_PCT = 70


def floor_bytes(shape: dict, dtype: torch.dtype, direction: str) -> int:
    e = torch.finfo(dtype).bits // 8
    B, Nc, C, P = shape["B"], shape["Nc"], shape["C"], shape["H"] * shape["W"]
    forward = e * B * P * (Nc + C) + e * B * P * (C + 1)  # read S, Y; write hints, mask
    backward = e * B * P * (C + 1 + Nc + C) + e * B * P * (Nc + C)  # read gH, gM, S, Y; write dS, dY
    return forward if direction == "forward" else forward + backward


def step(shape: dict, backend: str, dtype: torch.dtype, direction: str, layout: str, device: str):
    B, Nc, C, H, W = (shape[k] for k in ("B", "Nc", "C", "H", "W"))
    labels = torch.randint(0, Nc, (B, H, W), device=device)
    S = torch.nn.functional.one_hot(labels, Nc).permute(0, 3, 1, 2).to(dtype)  # channels-last strides
    if layout == "contiguous":
        S = S.contiguous()
    Y = torch.rand(B, C, H, W, device=device, dtype=dtype)
    nh = torch.full((B,), Nc, device=device)
    if direction == "forward":

        def forward():
            with torch.no_grad():
                segment_hint_colors(S, Y, nh, backend=backend)

        return forward
    S.requires_grad_()
    Y.requires_grad_()
    gH = torch.randn(B, C, H, W, device=device, dtype=dtype)
    gM = torch.randn(B, 1, H, W, device=device, dtype=dtype)

    def forward_backward():
        hints, mask = segment_hint_colors(S, Y, nh, backend=backend)
        torch.autograd.grad([hints, mask], [S, Y], [gH, gM])

    return forward_backward


def add_targets(rows: list[dict]) -> None:
    """Attach the 70% target to the fastest kernel row of each (dtype, direction, layout)."""
    for key in sorted({(r["params"]["dtype"], r["params"]["direction"], r["params"]["layout"]) for r in rows}):
        dtype, direction, layout = key
        kernels = [
            r for r in find(rows, dtype=dtype, direction=direction, layout=layout) if r["params"]["backend"] in KERNELS
        ]
        if kernels:
            best = min(kernels, key=lambda r: r["ms"])
            best["targets"].append(floor_target(best, TARGET_PCT))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="CPU dry run at toy sizes (figures meaningless)")
    args = parser.parse_args(argv)
    device = device_of(args.smoke)
    shape = SMOKE_SHAPE if args.smoke else SHAPE
    floors = measure_floors(device)
    print(f"{device_name(device)}: {describe_floors(floors)}")
    backends = [b for b in ("reference", *KERNELS) if b in refcolor.available_backends(device)]
    described = ", ".join(f"{k}={v}" for k, v in shape.items())
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for direction in ("forward", "forward_backward"):
            for layout in ("contiguous", "channels_last"):
                for backend in backends:
                    dt = str(dtype).removeprefix("torch.")
                    params = {
                        "backend": backend,
                        "dtype": dt,
                        "direction": direction,
                        "layout": layout,
                        "shape": f"{described} one-hot, every segment hinted",
                    }
                    name = f"{backend} {dt} {direction} {layout}"
                    try:
                        ms = time_ms(step(shape, backend, dtype, direction, layout, device), device)
                    except (RuntimeError, ValueError, torch.OutOfMemoryError) as exc:
                        rows.append(refused(name, params, exc))
                        print(f"{name:45} refused: {rows[-1]['refused'][:100]}")
                        continue
                    rows.append(figure(name, params, ms, floors, floor_bytes=floor_bytes(shape, dtype, direction)))
                    print(
                        f"{name:45} {ms:8.3f} ms  floor {rows[-1]['floor']['ms']:.3f} ms  "
                        f"{rows[-1]['pct_of_floor']:5.1f}% of floor"
                    )
    add_targets(rows)
    path = write_section(args.out, device_name(device), "segment_hint_colors", rows, floors)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

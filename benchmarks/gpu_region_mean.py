"""GPU benchmark of region_mean: each backend's time and its share of the memory floor.

    python -m benchmarks.gpu_region_mean [--out benchmarks/results] [--smoke]

Region maps shaped like line_regions' output (Voronoi cells of ~300 seeds, see
benchmarks/test_bench_region_mean.py), weighted (5% "line" pixels with weight 0), image gradient
only, at B=8, C=3, 256x256 and 1x3x2048x2048. The floor is the bytes the op must move (image,
int64 labels and weight read and painted written forward; grad_painted, labels and weight read and
grad_image written backward) over the copy bandwidth measured on the spot. Target: the fastest of
refcolor's kernels (cuda, triton) at >= 70% of that floor, per dtype, direction, shape and layout."""

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
from benchmarks.test_bench_region_mean import SEEDS, voronoi_labels
from refcolor.ops import region_mean

SHAPES = {"b8_256": (8, 3, 256, 256), "b1_2048": (1, 3, 2048, 2048)}
SMOKE_SHAPES = {"b2_16": (2, 3, 16, 16)}
KERNELS = ("cuda", "triton", "cpp")  # refcolor's own (cpp: CPU smoke runs only); "reference" is timed beside them
TARGET_PCT = 70


def floor_bytes(shape, dtype: torch.dtype, direction: str) -> int:
    e = torch.finfo(dtype).bits // 8
    B, C, H, W = shape
    per_pass = B * H * W * (2 * C * e + 8 + e)  # C channels in and out, the labels, the weight
    return per_pass if direction == "forward" else 2 * per_pass


def step(shape, backend: str, dtype: torch.dtype, direction: str, layout: str, device: str):
    B, C, H, W = shape
    g = torch.Generator().manual_seed(0)
    labels = voronoi_labels(B, H, W, SEEDS, g).to(device)
    image = torch.rand(B, C, H, W, generator=g).to(device=device, dtype=dtype)
    weight = (torch.rand(B, 1, H, W, generator=g) > 0.05).to(device=device, dtype=dtype)
    if layout == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    if direction == "forward":

        def forward():
            with torch.no_grad():
                region_mean(image, labels, SEEDS, weight, backend=backend)

        return forward
    image.requires_grad_()
    grad_painted = torch.randn_like(image)

    def forward_backward():
        painted, _ = region_mean(image, labels, SEEDS, weight, backend=backend)
        torch.autograd.grad(painted, image, grad_painted)

    return forward_backward


def add_targets(rows: list[dict]) -> None:
    """Attach the 70% target to the fastest kernel row of each (dtype, direction, shape, layout)."""
    keys = {tuple(r["params"][k] for k in ("dtype", "direction", "shape", "layout")) for r in rows}
    for dtype, direction, shape, layout in sorted(keys):
        kernels = [
            r
            for r in find(rows, dtype=dtype, direction=direction, shape=shape, layout=layout)
            if r["params"]["backend"] in KERNELS and "ms" in r
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
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    floors = measure_floors(device)
    print(f"{device_name(device)}: {describe_floors(floors)}")
    backends = [b for b in ("reference", *KERNELS) if b in refcolor.available_backends(device)]
    rows = []
    for shape_name, shape in shapes.items():
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
                            "shape": f"{shape_name} ~{SEEDS} Voronoi regions, weighted",
                        }
                        name = f"{backend} {dt} {direction} {shape_name} {layout}"
                        try:
                            ms = time_ms(step(shape, backend, dtype, direction, layout, device), device)
                        except (RuntimeError, ValueError, torch.OutOfMemoryError) as exc:
                            rows.append(refused(name, params, exc))
                            print(f"{name:55} refused: {rows[-1]['refused'][:100]}")
                            continue
                        rows.append(figure(name, params, ms, floors, floor_bytes=floor_bytes(shape, dtype, direction)))
                        print(
                            f"{name:55} {ms:8.3f} ms  floor {rows[-1]['floor']['ms']:.3f} ms  "
                            f"{rows[-1]['pct_of_floor']:5.1f}% of floor"
                        )
    add_targets(rows)
    path = write_section(args.out, device_name(device), "region_mean", rows, floors)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""GPU benchmark of tps_warp: each backend's time, its share of the memory floor, and its ratio to
kornia (get_tps_transform + warp_image_tps) on the same GPU.

    python -m benchmarks.gpu_tps_warp [--out benchmarks/results] [--smoke]

Two figures per backend: "warp" is the fused kernel alone (tps_warp_from_params on a solved spline),
"solve+warp" the whole call with its float64 spline solve, as a training step pays it. The floor
counts the image read once and the output written once (the spline parameters are a few hundred
bytes) at the copy bandwidth measured on the spot. Targets (issue 11), for the fastest of refcolor's
kernels (cuda, triton): "warp" >= 70% of the floor at the shape that fills the GPU (its 200 MB of
float32 are several times the L2; the benchmark shapes from test_bench_tps_warp are launch-bound on
a GPU), and "solve+warp" >= 20x faster than kornia, float32, at every shape. kornia's spline is not
the standard thin-plate spline (refcolor.ops.tps): it is a speed baseline only."""

from __future__ import annotations

import argparse
from functools import partial
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
    target,
    time_ms,
    write_section,
)
from benchmarks.test_bench_tps_warp import SHAPES, control_points
from refcolor.ops import tps_solve, tps_warp, tps_warp_from_params

GPU_SHAPES = {**SHAPES, "64x3x512x512_k16": (64, 3, 512, 512, 16)}
FLOOR_SHAPE = "64x3x512x512_k16"  # the floor target's shape
SMOKE_SHAPES = {"2x3x16x16_k16": (2, 3, 16, 16, 16)}
KERNELS = ("cuda", "triton", "cpp")  # refcolor's own (cpp: CPU smoke runs only)
TARGET_PCT, TARGET_X_KORNIA = 70, 20


def fastest_kernel_row(rows: list[dict], **params) -> dict | None:
    """The fastest of refcolor's own kernels' rows with these params, or None."""
    kernels = [r for r in find(rows, **params) if r["params"]["backend"] in KERNELS]
    return min(kernels, key=lambda r: r["ms"]) if kernels else None


def add_targets(rows: list[dict], floor_shape: str) -> None:
    """The floor target on the fastest kernel's "warp" row at `floor_shape`; the kornia target on the
    fastest kernel's float32 "solve+warp" row at each shape that has a kornia row."""
    for shape, dtype in sorted({(r["params"]["shape"], r["params"]["dtype"]) for r in rows}):
        warp, whole = (fastest_kernel_row(rows, shape=shape, dtype=dtype, part=part) for part in ("warp", "solve+warp"))
        if warp is not None and shape == floor_shape:
            warp["targets"].append(floor_target(warp, TARGET_PCT))
        kornia = find(rows, shape=shape, dtype=dtype, backend="kornia")
        if whole is not None and kornia:
            whole["targets"].append(
                target(
                    f"{whole['name']}: >= {TARGET_X_KORNIA}x faster than kornia",
                    kornia[0]["ms"] / whole["ms"],
                    TARGET_X_KORNIA,
                    "x kornia",
                )
            )


def kornia_solve_warp(kornia_transform, image, src, dst):
    """kornia's solve + warp, the same work as refcolor's "solve+warp" rows."""
    kernel_weights, affine_weights = kornia_transform.get_tps_transform(dst, src)
    kornia_transform.warp_image_tps(image, src, kernel_weights, affine_weights)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="CPU dry run at toy sizes (figures meaningless)")
    args = parser.parse_args(argv)
    device = device_of(args.smoke)
    shapes = SMOKE_SHAPES if args.smoke else GPU_SHAPES
    floors = measure_floors(device)
    print(f"{device_name(device)}: {describe_floors(floors)}")
    notes = []
    try:
        from kornia.geometry import transform as kornia_transform
    except ImportError as exc:
        kornia_transform = None
        notes.append(f"kornia not importable ({exc}): no kornia rows, the kornia targets are not evaluated")
    backends = [b for b in ("reference", *KERNELS) if b in refcolor.available_backends(device)]
    rows = []

    def add(name, params, fn, image):
        try:
            with torch.no_grad():
                ms = time_ms(fn, device)
        except (RuntimeError, ValueError, torch.OutOfMemoryError) as exc:
            rows.append(refused(name, params, exc))
            print(f"{name:50} refused: {rows[-1]['refused'][:100]}")
            return
        rows.append(figure(name, params, ms, floors, floor_bytes=2 * image.numel() * image.element_size()))
        print(f"{name:50} {ms:8.3f} ms  floor {rows[-1]['floor']['ms']:.3f} ms  {rows[-1]['pct_of_floor']:5.1f}%")

    for shape, (B, C, H, W, K) in shapes.items():
        src, dst = control_points(B, K, device)
        for dtype in (torch.float32, torch.bfloat16):
            dt = str(dtype).removeprefix("torch.")
            image = torch.rand(B, C, H, W, device=device, dtype=dtype)
            if kornia_transform is not None and dtype == torch.float32:
                add(
                    f"kornia {dt} {shape} solve+warp",
                    {"backend": "kornia", "dtype": dt, "shape": shape, "part": "solve+warp"},
                    partial(kornia_solve_warp, kornia_transform, image, src, dst),
                    image,
                )
            params = tps_solve(src, dst)
            for backend in backends:
                base = {"backend": backend, "dtype": dt, "shape": shape}
                add(
                    f"{backend} {dt} {shape} warp",
                    {**base, "part": "warp"},
                    partial(tps_warp_from_params, image, params, dst, backend=backend),
                    image,
                )
                add(
                    f"{backend} {dt} {shape} solve+warp",
                    {**base, "part": "solve+warp"},
                    partial(tps_warp, image, src, dst, backend=backend),
                    image,
                )
            del image
    add_targets(rows, next(iter(shapes)) if args.smoke else FLOOR_SHAPE)
    path = write_section(args.out, device_name(device), "tps_warp", rows, floors, notes=notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

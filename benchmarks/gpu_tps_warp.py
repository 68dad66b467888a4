"""GPU benchmark of tps_warp: time of each backend, its share of the memory floor, and the ratio
to kornia (get_tps_transform + warp_image_tps) on the same GPU.

    python -m benchmarks.gpu_tps_warp [--out benchmarks/results]

The floor counts the image read once and the output written once (the spline parameters are a
few hundred bytes) at the measured device-to-device copy bandwidth. Times include the float64
spline solve, as a training step pays it; `kernel_ms` times the fused kernel alone."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import refcolor
from benchmarks.gpu_common import RESULTS, copy_bandwidth, require_gpu, time_ms, write_results
from benchmarks.test_bench_tps_warp import SHAPES, control_points
from refcolor.ops import tps_solve, tps_warp, tps_warp_from_params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = require_gpu("gpu_tps_warp.py")
    bandwidth = copy_bandwidth()
    print(f"{device}: copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    try:
        from kornia.geometry import transform as kornia_transform
    except ImportError:
        kornia_transform = None
    rows = []
    for shape, (B, C, H, W, K) in SHAPES.items():
        src, dst = control_points(B, K, "cuda")
        for dtype in (torch.float32, torch.bfloat16):
            image = torch.rand(B, C, H, W, device="cuda", dtype=dtype)
            floor_ms = 2 * image.numel() * image.element_size() / bandwidth * 1e3
            kornia_ms = None
            if kornia_transform is not None and dtype == torch.float32:
                def kornia_step():
                    kw, aw = kornia_transform.get_tps_transform(dst, src)
                    kornia_transform.warp_image_tps(image, src, kw, aw)
                kornia_ms = time_ms(kornia_step)
            params = tps_solve(src, dst)
            for backend in refcolor.available_backends("cuda"):
                with torch.no_grad():
                    ms = time_ms(lambda: tps_warp(image, src, dst, backend=backend))
                    kernel_ms = time_ms(lambda: tps_warp_from_params(image, params, dst, backend=backend))
                row = {"backend": backend, "dtype": str(dtype).replace("torch.", ""), "shape": shape, "ms": round(ms, 4),
                       "kernel_ms": round(kernel_ms, 4), "floor_ms": round(floor_ms, 4),
                       "pct_of_floor": round(100 * floor_ms / kernel_ms, 1),
                       "kornia_ms": None if kornia_ms is None else round(kornia_ms, 4),
                       "speedup_vs_kornia": None if kornia_ms is None else round(kornia_ms / ms, 1)}
                rows.append(row)
                print(f"{shape:17} {row['dtype']:9} {backend:9} {ms:8.3f} ms (kernel {kernel_ms:.3f})  "
                      f"floor {floor_ms:.3f} ms  {row['pct_of_floor']:5.1f}%  kornia x{row['speedup_vs_kornia']}")
    print(f"wrote {write_results(args.out, 'tps_warp', rows, bandwidth)}")


if __name__ == "__main__":
    main()

"""pytest-benchmark: tps_warp backends against kornia (get_tps_transform + warp_image_tps).

    pytest benchmarks/test_bench_tps_warp.py --benchmark-enable

kornia is a speed baseline only: its spline is not the standard thin-plate spline (refcolor.ops.tps).
Every case solves its spline inside the timed call, as a training step would. The default test run
(`--benchmark-disable`) executes each case once."""
from __future__ import annotations

import pytest
import torch

import refcolor
from refcolor.ops import tps_warp
from tests.helpers import devices

SHAPES = {"4x3x256x256_k16": (4, 3, 256, 256, 16), "16x3x512x512_k16": (16, 3, 512, 512, 16)}


def control_points(B, K, device):
    """A jittered n x n control grid (K = n^2), as refcolor.nn.RandomTPS draws."""
    n = int(round(K**0.5))
    g = torch.Generator().manual_seed(0)
    xs = torch.linspace(-1, 1, n)
    dst = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(1, n * n, 2).repeat(B, 1, 1)
    src = dst + 0.1 * (torch.rand(B, n * n, 2, generator=g) * 2 - 1)
    return src.to(device), dst.to(device)


def cases():
    for device in devices():
        for backend in ("kornia", "reference", "cpp", "cuda", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter is for correctness tests only
            yield pytest.param(backend, device, id=f"{backend}-{device}")


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("backend,device", list(cases()))
def test_tps_warp_speed(benchmark, backend, device, shape):
    B, C, H, W, K = SHAPES[shape]
    image = torch.rand(B, C, H, W, device=device)
    src, dst = control_points(B, K, device)
    if backend == "kornia":
        kornia = pytest.importorskip("kornia")
        transform = kornia.geometry.transform

        def step():
            kernel_weights, affine_weights = transform.get_tps_transform(dst, src)
            out = transform.warp_image_tps(image, src, kernel_weights, affine_weights)
            _sync(device)
            return out
    else:
        if backend not in refcolor.available_backends(device):
            pytest.skip(f"{backend} not usable on {device}")

        def step():
            with torch.no_grad():
                out = tps_warp(image, src, dst, backend=backend)
            _sync(device)
            return out

    benchmark.group = f"tps_warp {shape} ({device})"
    assert benchmark(step).shape == (B, C, H, W)

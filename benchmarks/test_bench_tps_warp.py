"""pytest-benchmark: tps_warp backends against kornia (get_tps_transform + warp_image_tps).

    pytest benchmarks/test_bench_tps_warp.py --benchmark-enable

kornia is a speed baseline only: its spline is not the standard thin-plate spline (refcolor.ops.tps).
Every case solves its spline inside the timed call, as a training step would.
`test_tps_warp_layout_speed` times forward + backward (image gradient) for contiguous and
channels-last images (the layout `model.to(memory_format=torch.channels_last)` training feeds):
the kernels read and write both in place, so the two should cost about the same;

    python -m benchmarks.test_bench_tps_warp       # prints those ratios on the CPU

The default test run (`--benchmark-disable`) executes each case once."""

from __future__ import annotations

import time

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


LAYOUT_SHAPE = (4, 3, 256, 256, 16)


def layout_step(backend: str, layout: str, device: str):
    """Forward + image gradient of one warp; image and incoming gradient in `layout`."""
    B, C, H, W, K = LAYOUT_SHAPE
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    image = torch.rand(B, C, H, W, device=device).contiguous(memory_format=fmt).requires_grad_()
    grad_out = torch.rand(B, C, H, W, device=device).contiguous(memory_format=fmt)
    src, dst = control_points(B, K, device)

    def step():
        out = tps_warp(image, src, dst, backend=backend)
        (grad,) = torch.autograd.grad(out, image, grad_out)
        _sync(device)
        return grad

    return step


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backend,device", [c for c in cases() if c.values[0] != "kornia"])
def test_tps_warp_layout_speed(benchmark, backend, device, layout):
    if backend not in refcolor.available_backends(device):
        pytest.skip(f"{backend} not usable on {device}")
    benchmark.group = f"tps_warp forward+backward 4x3x256x256_k16 by layout ({device})"
    grad = benchmark(layout_step(backend, layout, device))
    if backend != "reference":  # the kernels return the gradient in the image's layout
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        assert grad.is_contiguous(memory_format=fmt)


def _best_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    """CPU forward + backward at 4x3x256x256, K = 16: cpp vs the grid_sample reference, per layout."""
    print(f"threads {torch.get_num_threads()}")
    print("fwd+bwd ms  layout          reference     cpp   speedup")
    for layout in ("contiguous", "channels_last"):
        ref = _best_ms(layout_step("reference", layout, "cpu"))
        cpp = _best_ms(layout_step("cpp", layout, "cpu"))
        print(f"            {layout:15s} {ref:9.1f} {cpp:7.1f}   {ref / cpp:5.2f}x")


if __name__ == "__main__":
    main()

"""pytest-benchmark: region_mean forward + backward, every backend against the scatter_reduce
reference, on region maps shaped like line_regions' output (Voronoi cells of ~300 seeds: piecewise
constant, a few hundred regions), weighted (weight 0 on a sparse set of "line" pixels), image
gradient only, at two shapes: B=8, C=3, 256x256 (a training batch) and 1x3x2048x2048 (one large
page).

    pytest benchmarks/test_bench_region_mean.py --benchmark-enable
    python -m benchmarks.test_bench_region_mean          # prints the CPU ratios below

The memory floor of forward + backward is the traffic no implementation avoids: image, labels
(int64), weight read and painted written forward; grad_painted, labels, weight read and grad_image
written backward: 72 bytes per float32 pixel (RGB); `memory_copy` measures the machine's copy
bandwidth on the spot to turn it into time. Run the CPU figures under tcmalloc
(LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4) and glibc malloc (benchmarks/README.md).
The default test run (`--benchmark-disable`) executes each case once, as a smoke test."""

from __future__ import annotations

import time
from functools import partial

import pytest
import torch

import refcolor
from refcolor.ops import region_mean
from tests.helpers import devices, make_image

SHAPES = {"b8_256": (8, 3, 256, 256), "b1_2048": (1, 3, 2048, 2048)}
SEEDS = 300  # Voronoi seeds per sample: the region count


def floor_bytes(shape, itemsize: int = 4) -> int:
    """Bytes forward + backward must move: image, painted, grad_painted, grad_image (C channels
    each), labels twice (8 bytes), weight twice."""
    B, C, H, W = shape
    return B * H * W * (4 * C * itemsize + 2 * 8 + 2 * itemsize)


def voronoi_labels(B: int, H: int, W: int, seeds: int, generator: torch.Generator) -> torch.Tensor:
    """(B, H, W) int64: each pixel's nearest of `seeds` random points, computed on a grid of at most
    256 x 256 and repeated up to (H, W) (cells stay piecewise constant)."""
    h, w = min(H, 256), min(W, 256)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([ys.flatten() / h, xs.flatten() / w], 1)
    out = []
    for _ in range(B):
        points = torch.rand(seeds, 2, generator=generator)
        out.append(torch.cdist(grid, points).argmin(1).reshape(h, w))
    labels = torch.stack(out)
    return labels.repeat_interleave(H // h, 1).repeat_interleave(W // w, 2).contiguous()


def make_inputs(shape, device: str):
    B, C, H, W = shape
    g = torch.Generator().manual_seed(0)
    labels = voronoi_labels(B, H, W, SEEDS, g)
    image = make_image(B, C, H, W, generator=g)
    weight = (torch.rand(B, 1, H, W, generator=g) > 0.05).float()  # 5% "line" pixels left out of the means
    return image.to(device), labels.to(device), weight.to(device)


def step_fn(backend: str, shape_name: str, device: str):
    image, labels, weight = make_inputs(SHAPES[shape_name], device)
    image = image.requires_grad_()
    grad_painted = torch.ones_like(image)

    def step():
        painted, _ = region_mean(image, labels, SEEDS, weight, backend=backend)
        out = torch.autograd.grad(painted, image, grad_painted)
        _sync(device)
        return out

    return step


def cases():
    for device in devices():
        for backend in ("reference", "cpp", "cuda", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter is for correctness tests only
            yield pytest.param(backend, device, id=f"{backend}-{device}")


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("backend,device", list(cases()))
def test_region_mean_speed(benchmark, backend, device, shape_name):
    if backend not in refcolor.available_backends(device):
        pytest.skip(f"{backend} not usable on {device}")
    benchmark.group = f"region_mean forward_backward {shape_name} ~{SEEDS} regions ({device})"
    benchmark.extra_info["floor_bytes"] = floor_bytes(SHAPES[shape_name])
    out = benchmark(step_fn(backend, shape_name, device))
    assert out[0].shape == SHAPES[shape_name]


def copy_buffers(device: str):
    src = torch.empty(64 << 20, dtype=torch.float32, device=device).fill_(1.0)  # 256 MB: far beyond caches
    return src, torch.empty_like(src)


@pytest.mark.parametrize("device", devices())
def test_memory_copy(benchmark, device):
    """The machine's copy bandwidth: bytes moved = 2 x 256 MB (read + write) per call."""
    src, dst = copy_buffers(device)
    benchmark.group = f"region_mean memory floor ({device})"
    benchmark.extra_info["bytes_moved"] = 2 * src.nbytes

    def step():
        dst.copy_(src)
        _sync(device)

    benchmark(step)


def _best_ms(fn, repeats: int = 5) -> float:
    fn()  # warm-up: allocator caches, page faults of first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    """Ratios on the CPU, one process: cpp vs scatter_reduce and % of the memory floor, forward +
    backward, per shape."""
    src, dst = copy_buffers("cpu")
    bandwidth = 2 * src.nbytes / (_best_ms(partial(dst.copy_, src)) / 1e3)
    del src, dst
    print(f"threads {torch.get_num_threads()}, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print("fwd+bwd ms  shape      floor   scatter_reduce     cpp   speedup  % of floor")
    for shape_name, shape in SHAPES.items():
        floor_ms = floor_bytes(shape) / bandwidth * 1e3
        ref = _best_ms(step_fn("reference", shape_name, "cpu"))
        cpp = _best_ms(step_fn("cpp", shape_name, "cpu"))
        print(
            f"            {shape_name:9s} {floor_ms:6.1f} {ref:16.1f} {cpp:7.1f}   {ref / cpp:5.2f}x    "
            f"{100 * floor_ms / cpp:5.1f}%"
        )


if __name__ == "__main__":
    main()

"""pytest-benchmark: segment_hint_colors backends at B=8, Nc=30, 256x256, one-hot segments, Nh = Nc,
for the segment layouts users build: contiguous, and `one_hot(labels, Nc).permute(0, 3, 1, 2)`
(channels-last strides, the common way to build them), plus everything channels-last.

    pytest benchmarks/test_bench_segment_hint_colors.py --benchmark-enable
    python -m benchmarks.test_bench_segment_hint_colors      # prints the ratios below

The reference backend is the plain einsum implementation of Eq. 4-8 with autograd. The memory
floor of forward + backward is the traffic no implementation avoids: S, Y read and hints, mask
written forward; grad_hints, grad_mask, S, Y read and grad_S, grad_Y written backward, 224 MB at
this shape; `memory_copy` measures the machine's copy bandwidth on the spot to turn it into time.
Run the CPU figures under tcmalloc (LD_PRELOAD=.../libtcmalloc_minimal.so.4) and glibc malloc:
fresh 63 MB gradients cost page faults under glibc (benchmarks/README.md). The default test run
(`--benchmark-disable`) executes each case once, as a smoke test."""

from __future__ import annotations

import time
from functools import partial

import pytest
import torch

import refcolor
from refcolor.ops import segment_hint_colors
from tests.helpers import devices, make_image

B, NC, C, H, W = 8, 30, 3, 256, 256
LAYOUTS = ("contiguous", "one_hot_permuted", "channels_last")


def floor_bytes(itemsize: int = 4) -> int:
    """Bytes forward + backward must move: 3 passes over S-sized data (S twice, grad_S), 5 over
    image-sized (Y twice, hints, grad_hints, grad_Y), 2 over mask-sized (mask, grad_mask)."""
    return B * H * W * (3 * NC + 5 * C + 2) * itemsize


def make_inputs(layout: str, device: str):
    labels = torch.randint(0, NC - 1, (B, H, W), generator=torch.Generator().manual_seed(0))
    segments = torch.nn.functional.one_hot(labels, NC).to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
    image = make_image(B, C, H, W, device=device)
    if layout == "contiguous":
        segments = segments.contiguous()
    elif layout == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    return segments, image


def step_fn(backend: str, layout: str, device: str, direction: str):
    S, Y = make_inputs(layout, device)
    nh = torch.full((B,), NC, device=device)
    if direction == "forward":

        def step():
            with torch.no_grad():
                out = segment_hint_colors(S, Y, nh, backend=backend)
            _sync(device)
            return out

        return step
    S_, Y_ = S.detach().requires_grad_(), Y.detach().requires_grad_()
    gH = torch.ones_like(Y)
    gM = torch.ones(B, 1, H, W, device=device)

    def step():
        hints, mask = segment_hint_colors(S_, Y_, nh, backend=backend)
        out = torch.autograd.grad([hints, mask], [S_, Y_], [gH, gM])
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


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
@pytest.mark.parametrize("backend,device", list(cases()))
def test_segment_hint_colors_speed(benchmark, backend, device, direction, layout):
    if backend not in refcolor.available_backends(device):
        pytest.skip(f"{backend} not usable on {device}")
    if layout == "channels_last" and backend == "reference":
        pytest.skip("the einsum baseline is quoted for the two segment layouts only")
    benchmark.group = f"segment_hint_colors {direction} B={B} Nc={NC} {H}x{W} one-hot ({device})"
    benchmark.extra_info["floor_bytes"] = floor_bytes()
    out = benchmark(step_fn(backend, layout, device, direction))
    assert out[0].shape == ((B, C, H, W) if direction == "forward" else (B, NC, H, W))


def copy_buffers(device: str):
    src = torch.empty(64 << 20, dtype=torch.float32, device=device).fill_(1.0)  # 256 MB: far beyond caches
    return src, torch.empty_like(src)


@pytest.mark.parametrize("device", devices())
def test_memory_copy(benchmark, device):
    """The machine's copy bandwidth: bytes moved = 2 x 256 MB (read + write) per call."""
    src, dst = copy_buffers(device)
    benchmark.group = f"segment_hint_colors memory floor ({device})"
    benchmark.extra_info["bytes_moved"] = 2 * src.nbytes

    def step():
        dst.copy_(src)
        _sync(device)

    benchmark(step)


def _best_ms(fn, repeats: int = 7) -> float:
    fn()  # warm-up: allocator caches, page faults of first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    """Ratios on the CPU, one process: cpp vs einsum (>= 3x wanted) and % of the memory floor
    (>= 50% wanted), forward + backward, per segment layout."""
    src, dst = copy_buffers("cpu")
    bandwidth = 2 * src.nbytes / (_best_ms(partial(dst.copy_, src)) / 1e3)
    floor_ms = floor_bytes() / bandwidth * 1e3
    del src, dst
    print(
        f"threads {torch.get_num_threads()}, copy bandwidth {bandwidth / 1e9:.1f} GB/s, "
        f"floor {floor_bytes() / 1e6:.0f} MB = {floor_ms:.1f} ms"
    )
    print("fwd+bwd ms  layout             einsum     cpp   speedup  % of floor")
    for layout in ("contiguous", "one_hot_permuted"):
        ref = _best_ms(step_fn("reference", layout, "cpu", "forward_backward"))
        cpp = _best_ms(step_fn("cpp", layout, "cpu", "forward_backward"))
        print(f"            {layout:17s} {ref:7.1f} {cpp:7.1f}   {ref / cpp:5.2f}x    {100 * floor_ms / cpp:5.1f}%")


if __name__ == "__main__":
    main()

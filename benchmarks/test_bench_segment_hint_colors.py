"""pytest-benchmark: segment_hint_colors backends at B=8, Nc=30, 256x256, one-hot segments, Nh = Nc.

    pytest benchmarks/test_bench_segment_hint_colors.py --benchmark-enable

The reference backend is the plain einsum implementation of Eq. 4-8 with autograd. The default test
run (`--benchmark-disable`) executes each case once, as a smoke test."""
from __future__ import annotations

import pytest
import torch

import refcolor
from refcolor.ops import segment_hint_colors
from tests.helpers import devices, make_image, make_segments

B, NC, C, H, W = 8, 30, 3, 256, 256


def cases():
    for device in devices():
        for backend in ("reference", "cpp", "cuda", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter is for correctness tests only
            yield pytest.param(backend, device, id=f"{backend}-{device}")


@pytest.fixture(scope="module")
def inputs():
    return {d: (make_segments(B, NC, H, W, "onehot", device=d), make_image(B, C, H, W, device=d)) for d in devices()}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
@pytest.mark.parametrize("backend,device", list(cases()))
def test_segment_hint_colors_speed(benchmark, inputs, backend, device, direction):
    if backend not in refcolor.available_backends(device):
        pytest.skip(f"{backend} not usable on {device}")
    S, Y = inputs[device]
    nh = torch.full((B,), NC, device=device)
    benchmark.group = f"segment_hint_colors {direction} B={B} Nc={NC} {H}x{W} one-hot ({device})"
    if direction == "forward":
        def step():
            with torch.no_grad():
                out = segment_hint_colors(S, Y, nh, backend=backend)
            _sync(device)
            return out
    else:
        S_, Y_ = S.clone().requires_grad_(), Y.clone().requires_grad_()
        gH, gM = torch.ones(B, C, H, W, device=device), torch.ones(B, 1, H, W, device=device)

        def step():
            hints, mask = segment_hint_colors(S_, Y_, nh, backend=backend)
            out = torch.autograd.grad([hints, mask], [S_, Y_], [gH, gM])
            _sync(device)
            return out

    hints = benchmark(step)[0]
    assert hints.shape == ((B, C, H, W) if direction == "forward" else (B, NC, H, W))

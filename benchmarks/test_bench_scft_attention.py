"""pytest-benchmark: scft_attention backends at B=4, N=M=1024, d=dv=512 float32 with the residual,
forward and forward + backward.

    pytest benchmarks/test_bench_scft_attention.py --benchmark-enable

"reference" is the naive matmul-softmax-matmul path; "auto" is what the op picks (on CPU the
measured order in refcolor.ops.scft_attention.PREFERENCE); the issue's CPU criterion is auto's
forward + backward no slower than the naive path's. The default test run (`--benchmark-disable`)
executes each case once (about 0.2-0.5 s each on a 2-core CPU)."""
from __future__ import annotations

import pytest
import torch

import refcolor
from refcolor.ops.scft_attention import scft_attention
from tests.helpers import devices

B, N, M, D = 4, 1024, 1024, 512


def cases():
    for device in devices():
        for backend in ("reference", "sdpa", "auto", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter is for correctness tests only
            yield pytest.param(backend, device, id=f"{backend}-{device}")


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    made = [torch.randn(B, n, D, generator=g) for n in (N, M, M, N)]  # q, k, v, residual
    return {d: [t.to(d) for t in made] for d in devices()}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
@pytest.mark.parametrize("backend,device", list(cases()))
def test_scft_attention_speed(benchmark, inputs, backend, device, direction):
    if backend != "auto" and backend not in refcolor.available_backends(device):
        pytest.skip(f"{backend} not usable on {device}")
    benchmark.group = f"scft_attention {direction} B={B} N=M={N} d={D} float32 ({device})"
    if direction == "forward":
        q, k, v, residual = inputs[device]

        def step():
            with torch.no_grad():
                out = scft_attention(q, k, v, residual, backend=backend)
            _sync(device)
            return out
    else:
        q, k, v, residual = (t.clone().requires_grad_() for t in inputs[device])
        grad_out = torch.ones(B, N, D, device=device)

        def step():
            out = scft_attention(q, k, v, residual, backend=backend)
            grads = torch.autograd.grad(out, (q, k, v, residual), grad_out)
            _sync(device)
            return grads[0]

    assert benchmark(step).shape == (B, N, D)

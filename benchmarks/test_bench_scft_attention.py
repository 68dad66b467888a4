"""pytest-benchmark: scft_attention backends at B=4, N=M=1024, d=dv=512 float32 with the residual,
forward and forward + backward.

    pytest benchmarks/test_bench_scft_attention.py --benchmark-enable

"reference" is the naive matmul-softmax-matmul path; "cpp" the C++ kernels; "auto" is what the op
picks (on CPU the measured order in refcolor.ops.scft_attention.PREFERENCE); the criterion is cpp's
forward + backward no slower than the naive path's. test_scft_attention_layout_speed times the
input layouts SCFT produces (NCHW features viewed as tokens: permuted; sliced views) at a small d,
where extra passes weigh most. The ratios to the six-GEMM floor are printed by
`python -m benchmarks.cpu_scft_attention`. The default test run (`--benchmark-disable`) executes
each case once (about 0.1-0.5 s each on a 2-core CPU)."""

from __future__ import annotations

import pytest
import torch

import refcolor
from refcolor.ops.scft_attention import scft_attention
from tests.helpers import devices

B, N, M, D = 4, 1024, 1024, 512


def cases():
    for device in devices():
        for backend in ("reference", "sdpa", "cpp", "cuda", "auto", "triton"):
            if backend == "triton" and device == "cpu":
                continue  # the interpreter is for correctness tests only
            if (backend, device) in (("cpp", "cuda"), ("cuda", "cpu")):
                continue
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


# Layouts at B=4, N=M=1024, d=dv=64, float32, forward + backward (CPU).
LB, LN, LD = 4, 1024, 64


def _in_layout(t, layout):
    if layout == "permuted":  # storage (B, d, N): NCHW features as tokens, f.flatten(2).transpose(1, 2)
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "sliced":  # channels cut out of a wider tensor: not dense
        wide = t.new_zeros(t.shape[0], t.shape[1], t.shape[2] + 8)
        wide[..., 4 : 4 + t.shape[2]] = t
        return wide[..., 4 : 4 + t.shape[2]]
    return t


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_scft_attention_layout_speed(benchmark, backend, layout):
    if backend not in refcolor.available_backends("cpu"):
        pytest.skip(f"{backend} not usable on cpu")
    benchmark.group = f"scft_attention forward_backward B={LB} N=M={LN} d={LD} float32 layouts (cpu)"
    g = torch.Generator().manual_seed(1)
    q, k, v, residual = (_in_layout(torch.randn(LB, LN, LD, generator=g), layout).requires_grad_() for _ in range(4))
    grad_out = torch.ones(LB, LN, LD)

    def step():
        out = scft_attention(q, k, v, residual, backend=backend)
        return torch.autograd.grad(out, (q, k, v, residual), grad_out)[0]

    assert benchmark(step).shape == (LB, LN, LD)

"""CPU measurement of scft_attention against its GEMM floor, and of its peak memory.

    python -m benchmarks.cpu_scft_attention [--repeats 7] [--shapes paper,4096_d256,1024_d64,1024_d512]
    python -m benchmarks.cpu_scft_attention --memory    # peak memory, one subprocess per backend

Speed: float32 forward + backward (gradients of q, k, v and the residual) for the naive path
("reference"), torch's SDPA and the C++ backend ("cpp"), and forward alone (no autograd). The floor
is the time of the six GEMMs every implementation performs (S = q k^T, O = P v; dV = P^T dO,
dP = dO v^T, dQ = dS k, dK = dS^T q; forward alone: the first two), each into a preallocated
output, measured in the same run. Methods are timed in interleaved rounds (the machine may be
shared) and each figure is the median over rounds; the ratio to the floor is per round, then the
median. The allocator matters on CPU (fresh N x M matrices are page faults under glibc's malloc):
run it under each, e.g. LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.

Memory: peak resident memory of one forward + backward beyond the inputs (a fresh subprocess per
backend, ru_maxrss after minus before), at B=2, N=M=4096, d=256 by default.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from refcolor.ops.scft_attention import scft_attention

SHAPES = {  # name: (B, N = M, d = dv)
    "paper": (16, 256, 992),
    "4096_d256": (2, 4096, 256),
    "1024_d64": (4, 1024, 64),
    "1024_d512": (4, 1024, 512),
}
BACKENDS = ("reference", "sdpa", "cpp")


def make_inputs(B, N, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v, r = (torch.randn(B, N, d, generator=g) for _ in range(4))
    return (2 * q, k, v, r), torch.randn(B, N, d, generator=g)


def floor_steps(inputs, grad_out):
    """The six GEMMs (and the forward's two), into preallocated outputs."""
    q, k, v, _ = inputs
    B, N, d = q.shape
    M = k.shape[1]
    S, out = torch.empty(B, N, M), torch.empty(B, N, d)
    dV, dP, dQ, dK = torch.empty(B, M, d), torch.empty(B, N, M), torch.empty(B, N, d), torch.empty(B, M, d)
    P = torch.softmax(torch.randn(B, N, M), -1)

    def forward():
        torch.bmm(q, k.transpose(1, 2), out=S)
        torch.bmm(P, v, out=out)

    def forward_backward():
        forward()
        torch.bmm(P.transpose(1, 2), grad_out, out=dV)
        torch.bmm(grad_out, v.transpose(1, 2), out=dP)
        torch.bmm(P, k, out=dQ)
        torch.bmm(P.transpose(1, 2), q, out=dK)

    return forward, forward_backward


def op_steps(backend, inputs, grad_out):
    leaves = [t.clone().requires_grad_() for t in inputs]

    def forward():
        with torch.no_grad():
            scft_attention(*inputs, backend=backend)

    def forward_backward():
        torch.autograd.grad(scft_attention(*leaves, backend=backend), leaves, grad_out)

    return forward, forward_backward


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_speed(shape_names, repeats):
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(none: glibc malloc)')}"
    )
    for name in shape_names:
        B, N, d = SHAPES[name]
        inputs, grad_out = make_inputs(B, N, d)
        steps = {"floor": floor_steps(inputs, grad_out)}
        steps.update({b: op_steps(b, inputs, grad_out) for b in BACKENDS})
        for direction, index in (("fwd+bwd", 1), ("fwd", 0)):
            times = {m: [] for m in steps}
            for s in steps.values():  # warm-up
                s[index]()
            for _ in range(repeats):
                for m, s in steps.items():
                    times[m].append(timed(s[index]))
            ratios = {m: statistics.median(t / f for t, f in zip(times[m], times["floor"], strict=True)) for m in steps}
            cells = ", ".join(f"{m} {1e3 * statistics.median(times[m]):.1f} ms ({ratios[m]:.2f}x)" for m in steps)
            print(f"{name} B={B} N=M={N} d={d} {direction}: {cells}", flush=True)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(backend, B, N, d):
    small, small_grad = make_inputs(1, 8, 4)  # first call at a tiny shape: loads kernels and libraries
    small = [t.requires_grad_() for t in small]
    torch.autograd.grad(scft_attention(*small, backend=backend), small, small_grad)
    inputs, grad_out = make_inputs(B, N, d)
    leaves = [t.clone().requires_grad_() for t in inputs]
    del inputs
    before = peak_rss_bytes()
    grads = torch.autograd.grad(scft_attention(*leaves, backend=backend), leaves, grad_out)
    del grads
    print(peak_rss_bytes() - before)


def measure_memory(shape):
    B, N, d = shape
    nm = B * N * N * 4
    print(
        f"peak memory beyond the inputs, fwd+bwd, B={B} N=M={N} d={d} float32 "
        f"(one B x N x M float32 matrix = {nm / 2**20:.0f} MiB), "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(none: glibc malloc)')}"
    )
    peaks = {}
    for backend in BACKENDS:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.cpu_scft_attention", "--memory-child", backend, str(B), str(N), str(d)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[backend] = int(out.stdout.split()[-1])
    for backend, peak in peaks.items():
        print(
            f"  {backend}: {peak / 2**20:.0f} MiB ({peak / nm:.2f} N x M matrices, "
            f"{peak / peaks['reference']:.2f}x the reference's)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--memory", action="store_true", help="peak memory at B=2, N=M=4096, d=256")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        backend, *sizes = args.memory_child
        memory_child(backend, *map(int, sizes))
    elif args.memory:
        measure_memory(SHAPES["4096_d256"])
    else:
        measure_speed(args.shapes.split(","), args.repeats)


if __name__ == "__main__":
    main()

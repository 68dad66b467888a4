"""GPU benchmark of scft_attention against torch: each SDPA backend forced (those that refuse a shape
are recorded as refused), the naive path (backend="reference") and each of refcolor's implementations
(both Triton implementations, and the CUDA C++ backend when refcolor was built with its CUDA kernels).

    python -m benchmarks.gpu_scft_attention [--out benchmarks/results] [--smoke]

Shapes (B=16, N = M, d = dv, residual added): the paper's N=256, d=992 (bfloat16 and float32), and
N=1024 (bfloat16) and 4096 (bfloat16, forward only) with d=512; forward (no autograd) and forward +
backward (gradients of q, k, v and the residual). The floor of a bfloat16 row is its GEMM FLOPs,
4 B N M d forward and 12 B N M d forward + backward (every implementation does those; recomputation
is extra), over the bfloat16 matmul rate measured on the spot; float32 rows have no floor (their
matmul rate is not measured) and report TFLOP/s. Peak memory is torch.cuda.max_memory_allocated
during one call beyond what was allocated before it. Targets (issue 11), on the fastest of
refcolor's implementations: forward + backward at the paper's shape in bfloat16 >= 1.5x faster than
the fastest torch path (any SDPA backend or the naive path), and forward at N=M=4096 in bfloat16
>= 50% of the bfloat16 matmul floor."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.gpu_common import (
    RESULTS,
    describe_floors,
    device_name,
    device_of,
    figure,
    find,
    measure_floors,
    refused,
    synchronize,
    target,
    time_ms,
    write_section,
)
from refcolor.ops.scft_attention import scft_attention

B = 16
# name: (N = M, d = dv, dtypes, directions)
SHAPES = {
    "paper_256_d992": (256, 992, ("bfloat16", "float32"), ("forward", "forward_backward")),
    "1024_d512": (1024, 512, ("bfloat16",), ("forward", "forward_backward")),
    "4096_d512": (4096, 512, ("bfloat16",), ("forward",)),
}
SMOKE_B, SMOKE_SHAPES = (
    2,
    {
        "paper_256_d992": (16, 8, ("bfloat16", "float32"), ("forward", "forward_backward")),
        "4096_d512": (32, 8, ("bfloat16",), ("forward",)),
    },
)
SDPA_BACKENDS = {
    "sdpa_flash": SDPBackend.FLASH_ATTENTION,
    "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa_math": SDPBackend.MATH,
}
TORCH_PATHS = (*SDPA_BACKENDS, "naive")
# refcolor's implementations: "triton_<impl>" is backend="triton" with REFCOLOR_SCFT_IMPL=<impl>;
# any other name is passed as scft_attention's backend=.
OURS = ("triton_gemm", "triton_flash", "cuda")
TARGET_SPEEDUP, TARGET_PCT_4096 = 1.5, 50


def attention_fn(method: str):
    """(q, k, v, residual) -> out for `method`."""
    if method in SDPA_BACKENDS:

        def sdpa(q, k, v, residual):
            with sdpa_kernel([SDPA_BACKENDS[method]]):
                out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
            return out + residual

        return sdpa
    if method == "naive":
        return lambda q, k, v, residual: scft_attention(q, k, v, residual, backend="reference")
    if method.startswith("triton_"):
        impl = method.removeprefix("triton_")

        def triton(q, k, v, residual):
            os.environ["REFCOLOR_SCFT_IMPL"] = impl  # read at each call
            return scft_attention(q, k, v, residual, backend="triton")

        return triton
    return lambda q, k, v, residual: scft_attention(q, k, v, residual, backend=method)


def step(method: str, direction: str, inputs, grad_out):
    fn = attention_fn(method)
    if direction == "forward":

        def forward():
            with torch.no_grad():
                fn(*inputs)

        return forward
    return lambda: torch.autograd.grad(fn(*inputs), inputs, grad_out)


def peak_memory_mib(fn, device: str) -> float | None:
    if device != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    synchronize(device)
    return round((torch.cuda.max_memory_allocated() - before) / 2**20, 1)


def gemm_flops(b: int, n: int, d: int, direction: str) -> int:
    return (4 if direction == "forward" else 12) * b * n * n * d


def min_bytes(b: int, n: int, d: int, e: int, direction: str) -> int:
    forward = e * b * n * d * 5  # read q, k, v, residual; write out
    backward = e * b * n * d * 9  # read dout, q, k, v, (logsumexp: small); write dq, dk, dv, dresidual
    return forward if direction == "forward" else forward + backward


def measure(name, params, method, direction, inputs, grad_out, floors, device) -> dict:
    """One method's row, or why it refused to run."""
    fn = step(method, direction, inputs, grad_out)
    try:
        fn()  # compiles / autotunes; raises if a forced SDPA backend refuses the shape
        synchronize(device)
        ms = time_ms(fn, device)
        memory = peak_memory_mib(fn, device)
    except (RuntimeError, ValueError, torch.OutOfMemoryError) as exc:
        if device == "cuda":
            torch.cuda.empty_cache()
        return refused(name, params, exc)
    flops = gemm_flops(params["B"], params["N"], params["d"], direction)
    bf16 = params["dtype"] == "bfloat16"
    e = inputs[0].element_size()
    row = figure(
        name,
        params,
        ms,
        floors,
        floor_flops=flops if bf16 else None,
        floor_bytes=min_bytes(params["B"], params["N"], params["d"], e, direction) if bf16 else None,
        extra={"tflops": round(flops / (ms * 1e-3) / 1e12, 2), "peak_memory_mib": memory},
    )
    return row


def add_targets(rows: list[dict]) -> list[dict]:
    """Both targets on the fastest of OURS's rows; returns a failed target (value None) for each
    target none of OURS ran for, to be stored with the section."""

    def fastest(methods, **params):
        timed = [r for r in find(rows, dtype="bfloat16", **params) if r["params"]["method"] in methods]
        return min(timed, key=lambda r: r["ms"]) if timed else None

    ours = fastest(OURS, shape="paper_256_d992", direction="forward_backward")
    best_torch = fastest(TORCH_PATHS, shape="paper_256_d992", direction="forward_backward")
    description = (
        f"paper shape bf16 fwd+bwd: >= {TARGET_SPEEDUP}x faster than the fastest torch path "
        f"({best_torch['params']['method'] if best_torch else 'none ran'})"
    )
    speedup = best_torch["ms"] / ours["ms"] if ours and best_torch else None
    if ours is not None:
        ours["targets"].append(target(f"{ours['name']}: {description}", speedup, TARGET_SPEEDUP, "x"))
    forward = fastest(OURS, shape="4096_d512", direction="forward")
    if forward is not None:
        forward["targets"].append(
            target(
                f"{forward['name']}: >= {TARGET_PCT_4096}% of the bf16 matmul floor",
                forward["pct_of_floor"],
                TARGET_PCT_4096,
                "% of floor",
            )
        )
    return (
        []
        if ours is not None and forward is not None
        else [
            target(f"{what}: none of {', '.join(OURS)} ran", None, threshold, unit)
            for what, row, threshold, unit in (
                (description, ours, TARGET_SPEEDUP, "x"),
                ("N=M=4096 bf16 forward", forward, TARGET_PCT_4096, "% of floor"),
            )
            if row is None
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="CPU dry run at toy sizes (figures meaningless)")
    args = parser.parse_args(argv)
    device = device_of(args.smoke)
    b, shapes = (SMOKE_B, SMOKE_SHAPES) if args.smoke else (B, SHAPES)
    floors = measure_floors(device)
    print(f"{device_name(device)}: {describe_floors(floors)}")
    rows = []
    for shape, (n, d, dtypes, directions) in shapes.items():
        for dt in dtypes:
            dtype = getattr(torch, dt)
            g = torch.Generator(device=device).manual_seed(0)
            inputs = [torch.randn(b, n, d, device=device, dtype=dtype, generator=g).requires_grad_() for _ in range(4)]
            grad_out = torch.randn(b, n, d, device=device, dtype=dtype, generator=g)
            for direction in directions:
                for method in (*TORCH_PATHS, *OURS):
                    params = {
                        "shape": shape,
                        "B": b,
                        "N": n,
                        "M": n,
                        "d": d,
                        "dv": d,
                        "dtype": dt,
                        "direction": direction,
                        "method": method,
                    }
                    name = f"{method} {dt} {direction} {shape}"
                    rows.append(measure(name, params, method, direction, inputs, grad_out, floors, device))
                    row = rows[-1]
                    if "refused" in row:
                        print(f"{name:55} refused: {row['refused'][:80]}")
                    else:
                        pct = "" if row["pct_of_floor"] is None else f"{row['pct_of_floor']:5.1f}% of floor"
                        print(
                            f"{name:55} {row['ms']:9.3f} ms {row['extra']['tflops']:7.1f} TFLOP/s {pct} "
                            f"{row['extra']['peak_memory_mib']} MiB"
                        )
            del inputs, grad_out
            if device == "cuda":
                torch.cuda.empty_cache()
    os.environ.pop("REFCOLOR_SCFT_IMPL", None)
    missing = add_targets(rows)
    path = write_section(args.out, device_name(device), "scft_attention", rows, floors, targets=missing)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

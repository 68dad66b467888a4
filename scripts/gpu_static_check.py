#!/usr/bin/env python3
"""Static checks of refcolor's GPU code for real targets, with no GPU: registers, local memory
(spills), shared memory and occupancy of every CUDA kernel of the built extension and of every
Triton kernel at every autotune config, for each target architecture.

    python scripts/gpu_static_check.py --triton --cuda-so path/to/_C.so --out benchmarks/results/cuda-static.md

--triton compiles each Triton kernel of kernels/*.py with Triton's own compiler for GPUTarget("cuda",
cc, 32): the kernels' Python launchers are run on fake CUDA tensors (torch's FakeTensorMode, no memory,
no device) with Triton's launch replaced by a recorder, so the kernels compile with exactly the
constexprs, num_warps and num_stages the launchers choose on a GPU; autotuned kernels compile at every
config. A kernel that no launcher reaches (a *_kernel not in LAUNCHERS below) is an error: add a
launcher. Each launch must also happen inside `torch.cuda.device(<the tensors' device>)`, checked by
running the launchers on cuda:1.

--cuda-so reads the CUDA kernels compiled into the extension (cuobjdump -res-usage / -sass / -elf).

Both read the cubins with the cuobjdump in Triton's wheel: registers per thread, stack and local memory
per thread (where ptxas puts spills), static and dynamic shared memory, and the SASS spill instructions
(STL/LDL) with whether they sit inside a loop (between a backward branch and its target). The check
fails when a kernel spills inside a loop, or exceeds an architecture's limits (registers x threads per
block, shared memory per block); a Triton autotune config that cannot launch on a target fails too (it
must be pruned for that target). Exit status 1 on any failure, with one line per failure on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class ArchLimits:
    """Per-SM and per-block limits of one compute capability (CUDA C Programming Guide, table
    "Technical Specifications per Compute Capability")."""

    name: str
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    max_threads_per_block: int = 1024
    static_smem_per_block: int = 48 * 1024
    smem_per_block_optin: int = 48 * 1024
    smem_per_sm: int = 48 * 1024
    reserved_smem_per_block: int = 1024  # the driver's share of each block's shared memory (sm_80+)
    reg_alloc_unit: int = 256  # registers are allocated per warp in units of 256


ARCHS = {
    80: ArchLimits("sm_80 (A100)", smem_per_block_optin=163 * 1024, smem_per_sm=164 * 1024),
    90: ArchLimits("sm_90 (H100/H200)", smem_per_block_optin=227 * 1024, smem_per_sm=228 * 1024),
    100: ArchLimits("sm_100 (B200)", smem_per_block_optin=227 * 1024, smem_per_sm=228 * 1024),
}


def occupancy(limits: ArchLimits, regs: int, threads: int, smem: int) -> tuple[int, float, str]:
    """(resident blocks per SM, fraction of the SM's warp slots, the limiting resource)."""
    warps = math.ceil(threads / 32)
    regs_per_warp = math.ceil(regs * 32 / limits.reg_alloc_unit) * limits.reg_alloc_unit
    bounds = {
        "warps": limits.max_warps_per_sm // warps,
        "blocks": limits.max_blocks_per_sm,
        "registers": (limits.regs_per_sm // regs_per_warp) // warps if regs else limits.max_blocks_per_sm,
        "shared memory": limits.smem_per_sm // (smem + limits.reserved_smem_per_block),
    }
    limiter = min(bounds, key=lambda k: bounds[k])
    blocks = bounds[limiter]
    return blocks, blocks * warps / limits.max_warps_per_sm, limiter


# ----------------------------------------------------------------------------- cubin inspection


def cuobjdump() -> str:
    """The cuobjdump of Triton's wheel (the CUDA toolkit here ships none), or one on PATH."""
    try:
        import triton.backends.nvidia as nv

        path = Path(nv.__file__).parent / "bin" / "cuobjdump"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("cuobjdump")
    if found is None:
        raise SystemExit("gpu_static_check: no cuobjdump (install triton, or the CUDA toolkit's cuobjdump)")
    return found


@dataclasses.dataclass
class Resources:
    regs: int = 0
    stack: int = 0
    local: int = 0
    shared: int = 0
    max_threads: int | None = None  # __launch_bounds__ / Triton's num_warps * 32
    spills: int = 0  # STL/LDL instructions
    spills_in_loops: int = 0


def _sections(text: str, sm: int | None = None) -> Iterator[tuple[int, str]]:
    """(sm number, section text) of a cuobjdump listing, one per embedded cubin; a lone cubin's
    listing names no arch, `sm` is then its arch."""
    parts = re.split(r"^\s*arch = sm_(\d+)a?\s*$", text, flags=re.M)
    if len(parts) == 1 and sm is not None:
        yield sm, text
    for i in range(1, len(parts) - 1, 2):
        yield int(parts[i]), parts[i + 1]


def parse_res_usage(text: str, sm: int | None = None) -> dict[tuple[int, str], Resources]:
    out: dict[tuple[int, str], Resources] = {}
    for arch, section in _sections(text, sm):
        for m in re.finditer(r"Function ([^\s:]+):\s*\n?\s*(REG:\d+[^\n]*)", section):
            fields = dict(re.findall(r"(\w+):(\d+)", m.group(2)))
            out[(arch, m.group(1))] = Resources(
                regs=int(fields.get("REG", 0)),
                stack=int(fields.get("STACK", 0)),
                local=int(fields.get("LOCAL", 0)),
                shared=int(fields.get("SHARED", 0)),
            )
    return out


def parse_max_threads(text: str, sm: int | None = None) -> dict[tuple[int, str], int]:
    """__launch_bounds__ of each kernel from `cuobjdump -elf` (EIATTR_MAX_THREADS in .nv.info.<fn>)."""
    out: dict[tuple[int, str], int] = {}
    for arch, section in _sections(text, sm):
        for m in re.finditer(r"\.nv\.info\.(\S+)(.*?)(?=\n\.\S|\Z)", section, flags=re.S):
            threads = re.search(
                r"EIATTR_(?:MAX_THREADS|REQNTID)\s*\n(?:\s*Format:[^\n]*\n)?\s*Value:\s*0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)",
                m.group(2),
            )
            if threads:
                out[(arch, m.group(1))] = (
                    int(threads.group(1), 16) * int(threads.group(2), 16) * int(threads.group(3), 16)
                )
    return out


def parse_sass_spills(text: str, sm: int | None = None) -> dict[tuple[int, str], tuple[int, int]]:
    """(STL/LDL count, of which inside a loop) per kernel. A loop is the address range from a
    backward branch's target label to the branch."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    for arch, section in _sections(text, sm):
        for m in re.finditer(r"Function : (\S+)(.*?)(?=\n\s*Function : |\Z)", section, flags=re.S):
            labels: dict[str, int] = {}
            branches: list[tuple[int, str]] = []
            spills: list[int] = []
            address = -1
            for line in m.group(2).splitlines():
                label = re.match(r"\s*(\.L_x_\d+):", line)
                if label:
                    labels[label.group(1)] = address + 1
                    continue
                ins = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*)", line)
                if not ins:
                    continue
                address = int(ins.group(1), 16)
                body = ins.group(2)
                if re.search(r"\b(STL|LDL)(\.\w+)*\b", body):
                    spills.append(address)
                target = re.search(r"\b(BRA|JMP|BRX)\b[^`]*`\((\.L_x_\d+)\)", body)
                if target:
                    branches.append((address, target.group(2)))
            loops = [(labels[t], a) for a, t in branches if t in labels and labels[t] <= a]
            in_loops = sum(any(lo <= s <= hi for lo, hi in loops) for s in spills)
            out[(arch, m.group(1))] = (len(spills), in_loops)
    return out


def inspect_cubins(path: Path, sm: int | None = None) -> dict[tuple[int, str], Resources]:
    """Resources of every kernel in `path` (a cubin of arch `sm`, or a host library with embedded
    cubins)."""
    tool = cuobjdump()

    def run(*flags: str) -> str:
        result = subprocess.run([tool, *flags, str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"cuobjdump {' '.join(flags)} {path}: {result.stderr.strip()}")
        return result.stdout

    resources = parse_res_usage(run("-res-usage"), sm)
    for key, threads in parse_max_threads(run("-elf"), sm).items():
        if key in resources:
            resources[key].max_threads = threads
    for key, (count, in_loops) in parse_sass_spills(run("-sass"), sm).items():
        if key in resources:
            resources[key].spills, resources[key].spills_in_loops = count, in_loops
    return resources


def demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    result = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    lines = result.stdout.splitlines()
    return dict(zip(names, lines, strict=True)) if len(lines) == len(names) else {n: n for n in names}


# ----------------------------------------------------------------------------- rows and verdicts


@dataclasses.dataclass
class Row:
    source: str  # e.g. "csrc/tps_warp" or "kernels/tps_warp.py"
    kernel: str
    config: str
    sm: int
    res: Resources
    dynamic_smem: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    occupancy: str = ""


def judge(row: Row) -> None:
    limits = ARCHS[row.sm]
    r = row.res
    smem = r.shared + row.dynamic_smem
    if r.regs > limits.max_regs_per_thread:
        row.problems.append(f"{r.regs} registers per thread (the limit is {limits.max_regs_per_thread})")
    if r.shared > limits.static_smem_per_block:
        row.problems.append(f"{r.shared} B of static shared memory (the limit is {limits.static_smem_per_block})")
    if smem > limits.smem_per_block_optin:
        row.problems.append(f"{smem} B of shared memory per block (the limit is {limits.smem_per_block_optin})")
    if r.spills_in_loops:
        row.problems.append(f"{r.spills_in_loops} local-memory (spill) instructions inside loops")
    if r.max_threads is None:
        largest = min(limits.max_threads_per_block, limits.regs_per_sm // max(r.regs, 1) // 32 * 32)
        row.occupancy = f"no launch bounds; blocks up to {largest} threads launch"
        return
    if r.regs * r.max_threads > limits.regs_per_sm:
        row.problems.append(f"{r.regs} registers x {r.max_threads} threads exceed the {limits.regs_per_sm} per SM")
        return
    blocks, fraction, limiter = occupancy(limits, r.regs, r.max_threads, smem)
    row.occupancy = f"{fraction:.0%} ({blocks} x {r.max_threads} threads, by {limiter})"


def cuda_rows(so: Path, archs: list[int]) -> list[Row]:
    resources = inspect_cubins(so)
    found = sorted({sm for sm, _ in resources})
    missing = [sm for sm in archs if sm not in found]
    if missing:
        raise SystemExit(f"gpu_static_check: {so} holds cubins for sm_{found}, not for sm_{missing}")
    names = demangle(sorted({name for _, name in resources}))
    rows = []
    for (sm, name), res in sorted(resources.items(), key=lambda kv: (names[kv[0][1]], kv[0][0])):
        if sm not in archs:
            continue
        pretty = names[name]
        op = next((d.name for d in sorted((ROOT / "csrc").iterdir()) if d.is_dir() and d.name in name), "?")
        rows.append(Row(f"csrc/{op}", pretty, "", sm, res))
    return rows


# ----------------------------------------------------------------------------- Triton capture


@dataclasses.dataclass
class Launch:
    module: str
    kernel: object  # triton JITFunction
    args: tuple
    kwargs: dict
    configs: list[dict]  # one entry ({}) unless autotuned
    autotune_keys: list[str]
    guard: int | None  # the index of the innermost torch.cuda.device() around the launch
    tensor_devices: set


def _device_index(device) -> int | None:
    import torch

    if device is None:
        return None
    if isinstance(device, int):
        return device
    device = torch.device(device)
    return device.index if device.index is not None else 0


@contextlib.contextmanager
def capture_launches() -> Iterator[list[Launch]]:
    """Records Triton launches instead of running them, and the torch.cuda.device guard around each."""
    import torch
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    launches: list[Launch] = []
    guards: list[int | None] = []

    class Guard:
        def __init__(self, device):
            if isinstance(device, torch.Tensor):
                device = device.device if device.is_cuda else None
            self.index = _device_index(device)

        def __enter__(self):
            guards.append(self.index)

        def __exit__(self, *exc):
            guards.pop()
            return False

    def record(fn, args, kwargs, configs, keys):
        import inspect

        params = list(inspect.signature(fn.fn).parameters)
        named = {**dict(zip(params, args, strict=False)), **kwargs}
        devices = {t.device for t in named.values() if isinstance(t, torch.Tensor)}
        module = fn.fn.__module__.rsplit(".", 1)[-1]
        guard = guards[-1] if guards else None
        launches.append(Launch(module, fn, tuple(args), dict(kwargs), configs, keys, guard, devices))

    def jit_run(self, *args, grid, warmup, **kwargs):
        record(self, args, kwargs, [{}], [])

    def autotune_run(self, *args, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        fn = self.fn
        while not isinstance(fn, JITFunction):
            fn = fn.fn
        record(fn, args, kwargs, [c.all_kwargs() for c in self.configs], list(self.keys))

    saved = (JITFunction.run, Autotuner.run, torch.cuda.device, torch.cuda.device_of)
    JITFunction.run, Autotuner.run = jit_run, autotune_run  # type: ignore[method-assign]
    torch.cuda.device, torch.cuda.device_of = Guard, Guard  # type: ignore[assignment,misc]
    try:
        yield launches
    finally:
        JITFunction.run, Autotuner.run, torch.cuda.device, torch.cuda.device_of = saved  # type: ignore[method-assign]


def _scft_attention(mod, device: str, dtype) -> None:
    import torch

    B, N, D, DV = 2, 256, 992, 992  # SCFT's regime: d = dv = 992 (the paper), N = M = 256 to 4096
    for M in (64, 256, 4096, 16384):  # single-pass rows at several ROWS/BLOCK_M, and the two-pass one
        q = torch.empty(B, N, D, device=device, dtype=dtype)
        k = torch.empty(B, M, D, device=device, dtype=dtype)
        v = torch.empty(B, M, DV, device=device, dtype=dtype)
        for residual in (None, torch.empty(B, N, DV, device=device, dtype=dtype)):
            for impl in mod.IMPLS:
                out, probs = mod.attention_forward(q, k, v, residual, 0.03, impl)
                mod.attention_backward(torch.empty_like(out), q, k, v, probs, 0.03)
            if dtype == torch.float32 and M == 4096:  # the TF32 variant of the flash kernel's tl.dot
                allowed = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    mod.flash_forward(q, k, v, residual, 0.03)
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = allowed


def _segment_hint_colors(mod, device: str, dtype) -> None:
    import torch

    for B, Nc, H, W in ((2, 8, 256, 256), (1, 3, 5, 7)):
        S = torch.empty(B, Nc, H, W, device=device, dtype=dtype)
        Y = torch.empty(B, 3, H, W, device=device, dtype=dtype)
        nh = torch.empty(B, device=device, dtype=torch.int64)
        hints, mask, colors, counts = mod.segment_hint_colors_forward(S, Y, nh)
        mod.segment_hint_colors_backward(torch.empty_like(hints), torch.empty_like(mask), S, Y, nh, colors, counts)


def _tps_warp(mod, device: str, dtype) -> None:
    import torch

    B, C, H, W, K = 2, 3, 256, 256, 16
    image = torch.empty(B, C, H, W, device=device, dtype=dtype)
    params = torch.empty(B, K + 3, 2, device=device, dtype=dtype)
    ctrl = torch.empty(B, K, 2, device=device, dtype=dtype)
    for padding_mode in (0, 1):
        out = mod.tps_warp_forward(image, params, ctrl, padding_mode)
        mod.tps_warp_backward_image(torch.empty_like(out), image, params, ctrl, padding_mode)


def _region_mean(mod, device: str, dtype) -> None:
    import torch

    # 256 x 256 with 300 regions (several region blocks): RGB (BLOCK_C = 4) and 12 channels (the
    # largest tile, BLOCK_C = 8, and the channel loop); and a small image (single small blocks).
    # Each with and without weights.
    for B, C, H, W, R in ((2, 3, 256, 256, 300), (1, 12, 256, 256, 300), (1, 3, 5, 7, 4)):
        image = torch.empty(B, C, H, W, device=device, dtype=dtype)
        labels = torch.empty(B, H, W, device=device, dtype=torch.int64)
        for weight in (None, torch.empty(B, 1, H, W, device=device, dtype=dtype)):
            painted, means, totals = mod.region_mean_forward(image, labels, weight, R)
            # (no means' gradient, weight not trained) and (both): every HAS_WEIGHT x WEIGHT_GRAD
            # pair a call makes, and both HAS_GRAD_MEANS.
            for grad_means in (None, torch.empty_like(means)):
                weight_grad = grad_means is not None and weight is not None
                mod.region_mean_backward(
                    torch.empty_like(painted), grad_means, image, labels, weight, means, totals, weight_grad
                )


# Per kernels/<module>.py: a function that calls its launchers (fake CUDA tensors, one dtype) the
# way the op's Triton backend does, covering every kernel and every launch-time branch.
LAUNCHERS: dict[str, Callable] = {
    "region_mean": _region_mean,
    "scft_attention": _scft_attention,
    "segment_hint_colors": _segment_hint_colors,
    "tps_warp": _tps_warp,
}


def kernel_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "kernels").glob("*.py") if p.stem != "__init__")


def _op_dtypes(module: str):
    import importlib

    import torch

    try:
        return importlib.import_module(f"refcolor.ops.{module}").DTYPES["triton"]
    except (ImportError, AttributeError, KeyError):
        return (torch.float32,)


def capture_all(device: str = "cuda:0") -> tuple[list[Launch], list[str]]:
    """Every launch of every kernels/ module on fake tensors of `device`, and the problems found
    (kernels no launcher reaches)."""
    import importlib

    from torch._subclasses.fake_tensor import FakeTensorMode
    from triton.runtime.jit import JITFunction

    problems: list[str] = []
    launches: list[Launch] = []
    for name in kernel_modules():
        mod = importlib.import_module(f"refcolor.kernels.{name}")
        kernels = {v.fn.__name__ for v in vars(mod).values() if isinstance(v, JITFunction)}
        kernels = {k for k in kernels if k.endswith("_kernel")}
        launcher = LAUNCHERS.get(name)
        if launcher is None:
            problems.append(f"kernels/{name}.py: no launcher in scripts/gpu_static_check.py LAUNCHERS; not compiled")
            continue
        with capture_launches() as got, FakeTensorMode(allow_non_fake_inputs=True):
            for dtype in _op_dtypes(name):
                launcher(mod, device, dtype)
        launches += got
        missed = kernels - {launch.kernel.fn.__name__ for launch in got}  # type: ignore[attr-defined]
        problems += [f"kernels/{name}.py: {k} is never launched by its launcher; not compiled" for k in sorted(missed)]
    return launches, problems


def guard_problems(launches: list[Launch]) -> list[str]:
    """Launches whose tensors live on a device other than the enclosing torch.cuda.device's."""
    problems = set()
    for launch in launches:
        indices = {_device_index(d) for d in launch.tensor_devices}
        name = f"kernels/{launch.module}.py: {launch.kernel.fn.__name__}"  # type: ignore[attr-defined]
        if len(indices) > 1:
            problems.add(f"{name} launched with tensors on several devices {sorted(indices)}")
        elif indices and launch.guard not in indices:
            problems.add(
                f"{name} launched for cuda:{indices.pop()} under torch.cuda.device({launch.guard}): "
                "Triton launches on the current device, so the launch needs a device guard"
            )
    return sorted(problems)


# ----------------------------------------------------------------------------- Triton compile


class _TargetDriver:
    """Stands in for Triton's CUDA driver: names a target, never touches a GPU (warmup compiles only)."""

    def __init__(self, target):
        self.target = target

    def get_current_device(self):
        return f"static-sm_{self.target.arch}"

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def is_active(self):
        return True


def _host_stand_in(value):
    """A real (1-element, CPU) tensor for a fake one: Triton reads a tensor argument's dtype and its
    address's alignment (CPU allocations are 64-byte aligned, CUDA's 512-byte: both pass 16)."""
    import torch

    if isinstance(value, torch.Tensor):
        return torch.empty(1, dtype=value.dtype)
    return value


def _signature_key(launch: Launch, config: dict) -> tuple:
    import torch

    def key(v):
        if isinstance(v, torch.Tensor):
            return ("tensor", str(v.dtype))
        if isinstance(v, int) and not isinstance(v, bool):
            return ("int", v == 1, v % 16 == 0, -(2**31) <= v < 2**31)
        return ("value", repr(v))

    def exact(v):  # keyword arguments are constexprs and compile options: each value compiles anew
        return ("tensor", str(v.dtype)) if isinstance(v, torch.Tensor) else ("value", repr(v))

    return (
        launch.kernel.fn.__name__,  # type: ignore[attr-defined]
        tuple(exact(a) if i in launch.kernel.constexprs else key(a) for i, a in enumerate(launch.args)),  # type: ignore[attr-defined]
        tuple(sorted((k, exact(v)) for k, v in {**launch.kwargs, **config}.items())),
    )


def _config_label(launch: Launch, config: dict) -> str:
    import torch

    fn = launch.kernel
    params = list(__import__("inspect").signature(fn.fn).parameters)  # type: ignore[attr-defined]
    dtypes = sorted({str(a.dtype).replace("torch.", "") for a in launch.args if isinstance(a, torch.Tensor)})
    merged = {**launch.kwargs, **config}
    constexpr = {params[i]: merged.get(params[i]) for i in fn.constexprs if params[i] in merged}  # type: ignore[attr-defined]
    parts = [f"{k}={v}" for k, v in constexpr.items()]
    parts += [f"{k}={merged[k]}" for k in ("num_warps", "num_stages") if k in merged]
    return f"{'/'.join(dtypes)} " + " ".join(parts)


def triton_rows(archs: list[int], launches: list[Launch]) -> list[Row]:
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    rows: list[Row] = []
    seen: set = set()
    work = []
    for launch in launches:
        for config in launch.configs:
            key = _signature_key(launch, config)
            if key not in seen:
                seen.add(key)
                work.append((launch, config))
    saved_driver = driver._active  # set_active/reset_active would look for a real GPU driver
    with tempfile.TemporaryDirectory() as tmp:
        for sm in archs:
            driver.set_active(_TargetDriver(GPUTarget("cuda", sm, 32)))
            try:
                for i, (launch, config) in enumerate(work):
                    args = tuple(_host_stand_in(a) for a in launch.args)
                    kwargs = {k: _host_stand_in(v) for k, v in {**launch.kwargs, **config}.items()}
                    label = _config_label(launch, config)
                    name = launch.kernel.fn.__name__  # type: ignore[attr-defined]
                    source = f"kernels/{launch.module}.py"
                    try:
                        with torch.device("cpu"):
                            compiled = launch.kernel.run(*args, grid=(1,), warmup=True, **kwargs)  # type: ignore[attr-defined]
                    except Exception as exc:  # an OutOfResources or a compile error: the config cannot run
                        row = Row(source, name, label, sm, Resources())
                        row.problems.append(f"does not compile: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                        rows.append(row)
                        continue
                    cubin = Path(tmp) / f"{sm}_{i}.cubin"
                    cubin.write_bytes(compiled.asm["cubin"])
                    (res,) = inspect_cubins(cubin, sm).values()
                    res.max_threads = compiled.metadata.num_warps * 32
                    rows.append(Row(source, name, label, sm, res, dynamic_smem=compiled.metadata.shared))
            finally:
                driver._active = saved_driver
    return rows


# ----------------------------------------------------------------------------- report


def markdown(cuda: list[Row], triton: list[Row], notes: list[str]) -> str:
    lines = [
        "# Static GPU resource report",
        "",
        "Written by `scripts/gpu_static_check.py` (run by `scripts/cuda_build_check.sh`). Nothing here ran "
        "on a GPU: the figures are those of the compiled cubins, read with cuobjdump. Registers and "
        "local memory are per thread; local memory is where ptxas puts spills (and stack arrays); spill "
        "instructions are the SASS STL/LDL, and those inside a loop fail the check. Occupancy is the "
        "share of the SM's 64 warp slots filled by resident blocks of the kernel's launch bound (CUDA "
        "kernels: `__launch_bounds__`; Triton: num_warps x 32), with the resource that limits it.",
        "",
        *notes,
    ]
    header = (
        "| source | kernel | config | arch | regs | stack+local B | spill instrs (in loops) | static smem B "
        "| dynamic smem B | occupancy | verdict |"
    )
    for title, rows in (("CUDA kernels (refcolor._C)", cuda), ("Triton kernels", triton)):
        if not rows:
            continue
        lines += ["", f"## {title}", "", header, "|" + "---|" * 11]
        for r in rows:
            verdict = "FAIL: " + "; ".join(r.problems) if r.problems else "ok"
            kernel = r.kernel.replace("|", "\\|")
            lines.append(
                f"| {r.source} | `{kernel}` | {r.config} | sm_{r.sm} | {r.res.regs} | {r.res.stack + r.res.local} "
                f"| {r.res.spills} ({r.res.spills_in_loops}) | {r.res.shared} | {r.dynamic_smem} | {r.occupancy} "
                f"| {verdict} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda-so", type=Path, help="the built refcolor._C with CUDA kernels")
    parser.add_argument("--triton", action="store_true", help="compile every Triton kernel and config")
    parser.add_argument("--archs", default="80,90", help="CUDA kernels' compute capabilities (default 80,90)")
    parser.add_argument("--triton-archs", default="80,90", help="Triton targets' compute capabilities (default 80,90)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--note", action="append", default=[], help="a line to put under the report's title")
    args = parser.parse_args(argv)
    archs = [int(a) for a in args.archs.split(",")]
    triton_archs = [int(a) for a in args.triton_archs.split(",")]
    unknown = [a for a in archs + triton_archs if a not in ARCHS]
    if unknown:
        parser.error(f"--archs: no limits known for {unknown}; known: {sorted(ARCHS)}")
    if os.environ.get("TRITON_INTERPRET", "0") == "1" and args.triton:
        parser.error("--triton compiles for real targets: run with TRITON_INTERPRET unset or 0")
    problems: list[str] = []
    cuda = cuda_rows(args.cuda_so, archs) if args.cuda_so else []
    triton: list[Row] = []
    if args.triton:
        import triton as triton_module

        launches, missing = capture_all("cuda:0")
        problems += missing
        guarded, _ = capture_all("cuda:1")
        problems += guard_problems(guarded)
        triton = triton_rows(triton_archs, launches)
        args.note.append(f"Triton {triton_module.__version__}; {len(triton)} compilations.")
    for row in [*cuda, *triton]:
        judge(row)
        problems += [f"{row.source} {row.kernel} [{row.config}] sm_{row.sm}: {p}" for p in row.problems]
    if args.out:
        notes = [f"- {n}" for n in args.note] + ([""] + [f"- FAIL: {p}" for p in problems] if problems else [])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(cuda, triton, notes))
    for p in problems:
        print(f"gpu_static_check: {p}", file=sys.stderr)
    print(f"gpu_static_check: {len(cuda)} CUDA and {len(triton)} Triton kernel compilations, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("TRITON_INTERPRET", "0")
    sys.exit(main())

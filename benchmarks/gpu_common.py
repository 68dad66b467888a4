"""Shared by the GPU benchmark scripts: the physical floors, timing, targets and the results files.

Every figure is one row of a section (one section per script) in benchmarks/results/<device>.json:

    {"name": "cuda bfloat16 forward_backward", "params": {...}, "ms": 0.41,
     "floor": {"kind": "bandwidth", "ms": 0.30, "bytes": 1.3e9},   # or "bf16_matmul" with "flops"; or null
     "pct_of_floor": 73.2,                                           # floor ms / measured ms
     "extra": {...},                                                 # other figures (TFLOP/s, peak memory, ...)
     "targets": [{"target": "...", "value": 73.2, "threshold": 70, "unit": "% of floor", "passed": true}]}

or, for a method that refused the shape, {"name": ..., "params": ..., "refused": "the error"}.
The floors are measured on the spot by each script, right before its figures: the bandwidth of a
large device-to-device copy (bytes read + bytes written) and the rate of a large bfloat16 matmul.
<device>.md is rendered from the JSON alone (`python -m benchmarks.gpu_common render`), so the two
never disagree; scripts/gpu_check.sh adds the status of each of its steps.

`--smoke` in every script runs it on the CPU at toy sizes with a wall-clock timer: it checks the
script end to end where no GPU is present; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SCHEMA = 1


# ---------------------------------------------------------------- device, timing, floors


def device_of(smoke: bool) -> str:
    """ "cuda", or "cpu" for a smoke run; exits with a one-line error when no GPU is present."""
    import torch

    if smoke:
        return "cpu"
    if not torch.cuda.is_available():
        raise SystemExit(f"{Path(sys.argv[0]).name}: no CUDA device (use --smoke for a CPU dry run)")
    return "cuda"


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else f"cpu-smoke-{platform.machine()}"


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, device: str = "cuda", warmup_ms: float = 25, rep_ms: float = 100) -> float:
    """Median milliseconds of `fn()`. CUDA: triton's do_bench (CUDA events, L2 flushed between
    runs); CPU (smoke runs only, where the figures mean nothing): one warm-up, the median of two calls."""
    if device == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    fn()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_floors(device: str = "cuda") -> dict:
    """The two ceilings of this device, measured now: copy bandwidth (bytes read + written per s)
    and bfloat16 matmul rate (FLOP/s) on random data (zeros run faster on some GPUs)."""
    import torch

    smoke = device != "cuda"
    n_bytes = (1 << 20) if smoke else (1 << 30)  # 1 GiB each way: far beyond the 50-60 MB L2
    src = torch.randint(0, 255, (n_bytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms = time_ms(partial(dst.copy_, src), device)  # a partial, not a closure over the names deleted below
    del src, dst
    n = 256 if smoke else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    matmul_ms = time_ms(lambda: a @ b, device)
    return {
        "bandwidth_bytes_per_s": 2 * n_bytes / (copy_ms * 1e-3),
        "bf16_matmul_flop_per_s": 2 * n**3 / (matmul_ms * 1e-3),
        "how": f"copy of {n_bytes >> 20} MiB device to device (read + write counted); "
        f"{n}x{n}x{n} bfloat16 matmul on random data; medians",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe_floors(floors: dict) -> str:
    return (
        f"copy bandwidth {floors['bandwidth_bytes_per_s'] / 1e12:.2f} TB/s, "
        f"bf16 matmul {floors['bf16_matmul_flop_per_s'] / 1e12:.0f} TFLOP/s"
    )


# ---------------------------------------------------------------- rows and targets


def target(description: str, value: float | None, threshold: float, unit: str) -> dict:
    """A `value >= threshold` target; a missing value (the method did not run) fails."""
    return {
        "target": description,
        "value": None if value is None else round(value, 3),
        "threshold": threshold,
        "unit": unit,
        "passed": value is not None and value >= threshold,
    }


def figure(
    name: str,
    params: dict,
    ms: float,
    floors: dict,
    *,
    floor_bytes: float | None = None,
    floor_flops: float | None = None,
    extra: dict | None = None,
) -> dict:
    """One timed row with its floor: bytes over the measured bandwidth, or FLOPs over the measured
    bf16 matmul rate (the larger of the two when both are given)."""
    floor = None
    candidates = []
    if floor_bytes is not None:
        candidates.append(
            {"kind": "bandwidth", "bytes": floor_bytes, "ms": floor_bytes / floors["bandwidth_bytes_per_s"] * 1e3}
        )
    if floor_flops is not None:
        candidates.append(
            {"kind": "bf16_matmul", "flops": floor_flops, "ms": floor_flops / floors["bf16_matmul_flop_per_s"] * 1e3}
        )
    pct = None
    if candidates:
        floor = max(candidates, key=lambda c: c["ms"])
        pct = round(100 * floor["ms"] / ms, 1)  # before rounding: small floors are a few microseconds
        floor["ms"] = round(floor["ms"], 6)
    return {
        "name": name,
        "params": params,
        "ms": round(ms, 5),
        "floor": floor,
        "pct_of_floor": pct,
        "extra": extra or {},
        "targets": [],
    }


def refused(name: str, params: dict, error: BaseException | str) -> dict:
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    return {"name": name, "params": params, "refused": text}


def floor_target(row: dict, threshold_pct: float) -> dict:
    kind = (row.get("floor") or {}).get("kind", "?")
    return target(
        f"{row['name']}: >= {threshold_pct:g}% of the {kind} floor",
        row.get("pct_of_floor"),
        threshold_pct,
        "% of floor",
    )


def find(rows: list[dict], **params) -> list[dict]:
    """Timed rows whose params contain `params` (refused rows left out)."""
    return [r for r in rows if "ms" in r and all(r["params"].get(k) == v for k, v in params.items())]


# ---------------------------------------------------------------- results files


def _commit() -> str | None:
    """The checkout's commit (with "-dirty" for local changes), or None outside a git checkout."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def environment() -> dict:
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        "commit": _commit(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    return info


def results_path(out_dir: Path, device: str) -> Path:
    return Path(out_dir) / (re.sub(r"[^A-Za-z0-9._-]+", "_", device).strip("_") + ".json")


def write_section(
    out_dir: Path,
    device: str,
    section: str,
    rows: list[dict],
    floors: dict,
    targets: list[dict] | None = None,
    env: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Store `rows` (and the section's targets, floors, notes) as `section` of <out_dir>/<device>.json,
    keeping the other sections, and re-render <device>.md. Returns the JSON path."""
    path = results_path(out_dir, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = json.loads(path.read_text()) if path.exists() else {}
    if result.get("schema") != SCHEMA:
        result = {}
    result.update({"schema": SCHEMA, "device": device, "environment": env if env is not None else environment()})
    row_targets = [t for r in rows for t in r.get("targets", [])]
    result.setdefault("sections", {})[section] = {
        "floors": floors,
        "rows": rows,
        "targets": row_targets + list(targets or []),
        "notes": list(notes or []),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".md").write_text(render_markdown(result))
    return path


def _fmt(value, digits=3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(result: dict) -> str:
    """<device>.md: environment, the step log of gpu_check.sh, every target with PASS/FAIL, and every
    figure with its floor."""
    env = result.get("environment", {})
    lines = [f"# GPU check: {result.get('device', '?')}", ""]
    lines.append(", ".join(f"{k} {v}" for k, v in env.items()) + ".")
    lines.append("")
    steps = result.get("steps")
    if steps:
        lines += ["## Steps (scripts/gpu_check.sh)", "", "| step | status | seconds |", "| --- | --- | --- |"]
        lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
        failed = [s["step"] for s in steps if s["status"] != "ok"]
        lines += ["", f"Failed steps: {', '.join(failed)}." if failed else "Every step finished.", ""]
    sections = result.get("sections", {})
    all_targets = [(name, t) for name, s in sections.items() for t in s.get("targets", [])]
    if all_targets:
        lines += [
            "## Targets",
            "",
            "| section | target | value | threshold | result |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, t in all_targets:
            digits = 1 if t["unit"].startswith("%") else 2
            lines.append(
                f"| {name} | {t['target']} | {_fmt(t['value'], digits)} {t['unit']} | {t['threshold']:g} | "
                f"{'PASS' if t['passed'] else 'FAIL'} |"
            )
        passed = sum(t["passed"] for _, t in all_targets)
        lines += ["", f"{passed} of {len(all_targets)} targets met.", ""]
    for name, section in sections.items():
        lines += [f"## {name}", ""]
        if section.get("floors"):
            lines += [
                f"Floors measured before these figures: {describe_floors(section['floors'])} "
                f"({section['floors'].get('how', '')}).",
                "",
            ]
        lines += [f"- {note}" for note in section.get("notes", [])]
        if section.get("notes"):
            lines.append("")
        extra_keys = sorted({k for r in section["rows"] for k in r.get("extra", {})})
        header = ["figure", "ms", "floor", "floor ms", "% of floor", *extra_keys]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in section["rows"]:
            if "refused" in r:
                cells = [r["name"], "refused: " + r["refused"][:120].replace("|", "/")] + [""] * (len(header) - 2)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            floor = r.get("floor") or {}
            cells = [
                r["name"],
                _fmt(r["ms"]),
                floor.get("kind", "-"),
                _fmt(floor.get("ms")),
                _fmt(r.get("pct_of_floor"), 1),
            ]
            cells += [_fmt(r.get("extra", {}).get(k), 2) for k in extra_keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def add_steps(json_path: Path, steps_tsv: Path, device: str | None = None) -> Path:
    """Record gpu_check.sh's step log (tab-separated: step, status, seconds) in the results and
    re-render the Markdown; creates the JSON when no benchmark got as far as writing it."""
    path = Path(json_path)
    result = (
        json.loads(path.read_text())
        if path.exists()
        else {"schema": SCHEMA, "device": device or path.stem, "sections": {}}
    )
    steps = []
    for line in Path(steps_tsv).read_text().splitlines():
        if line.strip():
            step, status, seconds = line.split("\t")[:3]
            steps.append({"step": step, "status": status, "seconds": int(float(seconds))})
    result["steps"] = steps
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".md").write_text(render_markdown(result))
    return path


def summary(result: dict) -> str:
    """A few lines for the end of a log: failed steps, then each target's PASS/FAIL."""
    out = []
    failed = [s["step"] for s in result.get("steps", []) if s["status"] != "ok"]
    out.append(f"failed steps: {', '.join(failed)}" if failed else "all steps finished")
    for name, section in result.get("sections", {}).items():
        for t in section.get("targets", []):
            out.append(
                f"{'PASS' if t['passed'] else 'FAIL'}  {name}: {t['target']} (value {_fmt(t['value'], 2)} {t['unit']})"
            )
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Results files of the GPU benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("device-file", help="print the results JSON path of the current CUDA device")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--smoke", action="store_true", help="the path of the CPU dry run's results")
    p = sub.add_parser("steps", help="record gpu_check.sh's step log in the results and print the summary")
    p.add_argument("json", type=Path)
    p.add_argument("steps_tsv", type=Path)
    p = sub.add_parser("render", help="re-render <device>.md from <device>.json")
    p.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "device-file":
        import torch

        if args.smoke:
            name = device_name("cpu")
        else:
            name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no-cuda-device"
        print(results_path(args.out, name))
    elif args.command == "steps":
        path = add_steps(args.json, args.steps_tsv)
        print(summary(json.loads(path.read_text())))
    else:
        args.json.with_suffix(".md").write_text(render_markdown(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

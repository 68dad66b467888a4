"""The GPU check's CPU-testable parts: the results format (floors, targets, JSON and Markdown) on fake
timings, each benchmark's pass/fail logic, and scripts/gpu_check.sh's shell and step report."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import (
    gpu_common,
    gpu_region_mean,
    gpu_scft_attention,
    gpu_segment_hint_colors,
    gpu_tps_warp,
    gpu_train_step,
)
from benchmarks.gpu_common import figure, floor_target, refused, target

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
# 4 TB/s and 800 TFLOP/s: 4 GB take 1 ms, 8e14 FLOPs take 1 s.
FLOORS = {"bandwidth_bytes_per_s": 4e12, "bf16_matmul_flop_per_s": 8e14, "how": "fake", "measured_at": "now"}


def test_figure_divides_the_floor_by_the_measured_time():
    row = figure("op", {"backend": "cuda"}, 2.0, FLOORS, floor_bytes=4e9)
    assert row["floor"] == {"kind": "bandwidth", "bytes": 4e9, "ms": 1.0}
    assert row["pct_of_floor"] == 50.0
    # Both floors given: the larger time is the floor (here the FLOPs: 8e11 FLOPs = 1 ms > 0.5 ms).
    both = figure("op", {}, 4.0, FLOORS, floor_bytes=2e9, floor_flops=8e11)
    assert both["floor"]["kind"] == "bf16_matmul" and both["floor"]["ms"] == 1.0 and both["pct_of_floor"] == 25.0
    assert figure("op", {}, 3.0, FLOORS)["floor"] is None and figure("op", {}, 3.0, FLOORS)["pct_of_floor"] is None


def test_targets_pass_at_the_threshold_and_fail_below_or_when_missing():
    at = figure("a", {}, 1.0 / 0.7, FLOORS, floor_bytes=4e9)  # exactly 70% of the floor
    assert floor_target(at, 70)["passed"] and floor_target(at, 70)["value"] == 70.0
    below = figure("b", {}, 1.0 / 0.69, FLOORS, floor_bytes=4e9)
    assert not floor_target(below, 70)["passed"]
    assert target("x", None, 1.5, "x") == {"target": "x", "value": None, "threshold": 1.5, "unit": "x", "passed": False}


def test_write_section_keeps_other_sections_and_renders_every_figure(tmp_path):
    env = {"torch": "2.x", "cuda": "13.0"}
    fast = figure("triton bf16", {"backend": "triton"}, 1.25, FLOORS, floor_bytes=4e9, extra={"tflops": 3.5})
    fast["targets"].append(floor_target(fast, 70))  # 80%: PASS
    slow = figure("cuda bf16", {"backend": "cuda"}, 2.0, FLOORS, floor_bytes=4e9)
    slow["targets"].append(floor_target(slow, 70))  # 50%: FAIL
    gpu_common.write_section(tmp_path, "Fake GPU 80GB", "first", [fast, slow], FLOORS, env=env)
    path = gpu_common.write_section(
        tmp_path,
        "Fake GPU 80GB",
        "second",
        [refused("sdpa_flash bf16", {}, RuntimeError("head dim 992 > 256\nmore"))],
        FLOORS,
        targets=[target("missing method", None, 1.5, "x")],
        env=env,
        notes=["kornia not importable"],
    )
    assert path.name == "Fake_GPU_80GB.json"
    result = json.loads(path.read_text())
    assert list(result["sections"]) == ["first", "second"]
    assert [t["passed"] for t in result["sections"]["first"]["targets"]] == [True, False]
    assert result["sections"]["second"]["rows"][0]["refused"] == "head dim 992 > 256"
    md = path.with_suffix(".md").read_text()
    assert "| first | triton bf16: >= 70% of the bandwidth floor | 80.0 % of floor | 70 | PASS |" in md
    assert "| first | cuda bf16: >= 70% of the bandwidth floor | 50.0 % of floor | 70 | FAIL |" in md
    assert "| second | missing method | - x | 1.5 | FAIL |" in md
    assert "1 of 3 targets met." in md
    assert "| triton bf16 | 1.250 | bandwidth | 1.000 | 80.0 | 3.50 |" in md
    assert "| sdpa_flash bf16 | refused: head dim 992 > 256 |" in md
    assert "- kornia not importable" in md
    assert "copy bandwidth 4.00 TB/s, bf16 matmul 800 TFLOP/s" in md


def test_step_log_is_recorded_and_failed_steps_named(tmp_path):
    steps = tmp_path / "steps.tsv"
    steps.write_text("probe\tok\t3\nbuild\tfailed (exit 1)\t95\nbench_tps_warp\ttimeout after 50s\t60\n")
    path = gpu_common.add_steps(tmp_path / "No_GPU.json", steps)  # no benchmark wrote results
    result = json.loads(path.read_text())
    assert [s["status"] for s in result["steps"]] == ["ok", "failed (exit 1)", "timeout after 50s"]
    assert "Failed steps: build, bench_tps_warp." in path.with_suffix(".md").read_text()
    assert gpu_common.summary(result).splitlines()[0] == "failed steps: build, bench_tps_warp"


def rows_of(specs, floors=FLOORS, floor_bytes=4e9):
    """Fake timed rows from (params, ms) pairs."""
    return [
        figure(" ".join(str(v) for v in params.values()), params, ms, floors, floor_bytes=floor_bytes)
        for params, ms in specs
    ]


def test_hint_target_goes_to_the_fastest_kernel_not_the_reference():
    base = {"dtype": "bfloat16", "direction": "forward", "layout": "channels_last"}
    rows = rows_of(
        [
            ({**base, "backend": "reference"}, 1.0),
            ({**base, "backend": "cuda"}, 2.0),
            ({**base, "backend": "triton"}, 1.6),
        ]
    )
    gpu_segment_hint_colors.add_targets(rows)
    assert [len(r["targets"]) for r in rows] == [0, 0, 1]
    assert rows[2]["targets"][0]["value"] == 62.5 and not rows[2]["targets"][0]["passed"]


def test_tps_targets_floor_at_the_large_shape_and_kornia_ratio_everywhere():
    big, small = gpu_tps_warp.FLOOR_SHAPE, "4x3x256x256_k16"
    rows = rows_of(
        [
            ({"backend": "kornia", "dtype": "float32", "shape": small, "part": "solve+warp"}, 21.0),
            ({"backend": "cuda", "dtype": "float32", "shape": small, "part": "warp"}, 0.5),
            ({"backend": "cuda", "dtype": "float32", "shape": small, "part": "solve+warp"}, 1.0),
            ({"backend": "kornia", "dtype": "float32", "shape": big, "part": "solve+warp"}, 10.0),
            ({"backend": "cuda", "dtype": "float32", "shape": big, "part": "warp"}, 1.25),
            ({"backend": "triton", "dtype": "float32", "shape": big, "part": "warp"}, 1.5),
            ({"backend": "cuda", "dtype": "float32", "shape": big, "part": "solve+warp"}, 1.0),
            ({"backend": "cuda", "dtype": "bfloat16", "shape": big, "part": "warp"}, 1.0),
        ]
    )
    gpu_tps_warp.add_targets(rows, big)
    by_name = {t["target"]: t for r in rows for t in r["targets"]}
    small_ratio = by_name[f"cuda float32 {small} solve+warp: >= 20x faster than kornia"]
    assert small_ratio["value"] == 21.0 and small_ratio["passed"]
    big_ratio = by_name[f"cuda float32 {big} solve+warp: >= 20x faster than kornia"]
    assert big_ratio["value"] == 10.0 and not big_ratio["passed"]
    assert by_name[f"cuda float32 {big} warp: >= 70% of the bandwidth floor"]["passed"]  # 80%
    assert by_name[f"cuda bfloat16 {big} warp: >= 70% of the bandwidth floor"]["value"] == 100.0
    assert len(by_name) == 4  # no floor target at the launch-bound shape, no kornia target in bf16


def scft_rows(times: dict, shape="paper_256_d992", direction="forward_backward"):
    params = {
        "shape": shape,
        "B": 16,
        "N": 256,
        "M": 256,
        "d": 992,
        "dv": 992,
        "dtype": "bfloat16",
        "direction": direction,
    }
    return [figure(m, {**params, "method": m}, ms, FLOORS, floor_flops=8e11) for m, ms in times.items()]


def test_scft_speedup_is_against_the_fastest_torch_path_naive_included():
    rows = scft_rows({"sdpa_efficient": 3.0, "sdpa_math": 5.0, "naive": 2.0, "triton_gemm": 1.5, "triton_flash": 1.2})
    rows += scft_rows({"triton_gemm": 2.5, "triton_flash": 4.0}, shape="4096_d512", direction="forward")
    assert gpu_scft_attention.add_targets(rows) == []
    speedup = rows[4]["targets"][0]
    assert "(naive)" in speedup["target"] and speedup["value"] == pytest.approx(2.0 / 1.2, abs=1e-3)
    assert speedup["passed"]
    forward = rows[5]["targets"][0]  # triton_gemm at 4096: 1 ms floor / 2.5 ms = 40%
    assert forward["value"] == 40.0 and not forward["passed"]


def test_scft_targets_fail_when_none_of_ours_ran():
    rows = scft_rows({"sdpa_efficient": 3.0, "naive": 2.0})
    rows.append(refused("triton_gemm", {"method": "triton_gemm"}, "CUDA error"))
    missing = gpu_scft_attention.add_targets(rows)
    assert len(missing) == 2 and not any(t["passed"] for t in missing)


def test_train_target_is_the_reference_over_the_fused_step_time():
    rows = rows_of(
        [
            ({"model": "scft", "backend": "auto"}, 100.0),
            ({"model": "scft", "backend": "reference"}, 125.0),
            ({"model": "guide", "backend": "auto"}, 100.0),
            ({"model": "guide", "backend": "reference"}, 140.0),
        ],
        floor_bytes=None,
    )
    gpu_train_step.add_targets(rows)
    assert [(t["value"], t["passed"]) for r in rows for t in r["targets"]] == [(1.25, False), (1.4, True)]


@pytest.mark.parametrize("script", ["gpu_check.sh", "cpu_benchmarks.sh"])
def test_scripts_parse_and_pass_shellcheck(script):
    path = ROOT / "scripts" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt install shellcheck)")
    done = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_gpu_check_without_time_skips_every_step_and_says_so(tmp_path):
    # A 20 s budget leaves no step its 15 s minimum: each is reported as skipped, the results and
    # the log still reach $OUT, and the exit status is 1.
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_CHECK_BUDGET_S": "20",
        "GPU_CHECK_SMOKE": "1",
        "GPU_CHECK_RESULTS": str(tmp_path / "res"),
        "OUT": str(out),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "probe: skipped, no time left" in done.stdout
    assert "FAILED STEPS: probe" in done.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{gpu_common.device_name('cpu')}.{ext}" for ext in ("json", "log", "md"))
    result = json.loads(next(out.glob("*.json")).read_text())
    assert result["steps"] == [{"step": "probe", "status": "skipped (no time left)", "seconds": 0}]


@pytest.mark.usefixtures("one_thread")
def test_every_gpu_script_runs_end_to_end_in_its_cpu_smoke_mode(tmp_path, monkeypatch):
    # The GPU scripts run nowhere else in CI: --smoke (CPU, toy sizes) keeps them from rotting.
    # Without the Triton interpreter (slow, and tested elsewhere) the triton rows are refusals.
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    for script in (gpu_segment_hint_colors, gpu_tps_warp, gpu_region_mean, gpu_scft_attention, gpu_train_step):
        script.main(["--smoke", "--out", str(tmp_path)])
    result = json.loads(gpu_common.results_path(tmp_path, gpu_common.device_name("cpu")).read_text())
    assert list(result["sections"]) == [
        "segment_hint_colors",
        "tps_warp",
        "region_mean",
        "scft_attention",
        "train_step",
    ]
    for name, section in result["sections"].items():
        timed = [r for r in section["rows"] if "ms" in r]
        assert timed and all(r["ms"] > 0 for r in timed), name
        assert section["floors"]["bandwidth_bytes_per_s"] > 0 and section["floors"]["bf16_matmul_flop_per_s"] > 0
    assert {"segment_hint_colors", "tps_warp", "region_mean", "scft_attention", "train_step"} <= {
        name for name, s in result["sections"].items() if s["targets"]
    }

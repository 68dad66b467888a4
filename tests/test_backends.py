"""Backend choice, REFCOLOR_BACKEND, and life without the compiled extension."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import refcolor
from refcolor.backends import choose_backend
from refcolor.ops.segment_hint_colors import DTYPES


def test_available_backends_per_device():
    per_device = refcolor.available_backends()
    assert "reference" in per_device["cpu"]
    assert ("cuda" in per_device) == torch.cuda.is_available()
    assert "cuda" not in per_device["cpu"]
    assert refcolor.available_backends("cpu") == per_device["cpu"]


@pytest.mark.skipif("cpp" not in refcolor.available_backends("cpu"), reason="extension not built")
def test_auto_prefers_cpp_on_cpu_and_logs_rejections(caplog):
    cpu = torch.device("cpu")
    assert choose_backend("op", "auto", cpu, torch.float32, DTYPES) == "cpp"
    with caplog.at_level(logging.DEBUG, logger="refcolor.backends"):
        assert choose_backend("op", "auto", cpu, torch.float16, DTYPES) == "reference"
    assert "rejected backend 'cpp'" in caplog.text and "float16" in caplog.text


def test_environment_variable_overrides_auto_only(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("REFCOLOR_BACKEND", "reference")
    assert choose_backend("op", "auto", cpu, torch.float32, DTYPES) == "reference"
    if "cpp" in refcolor.available_backends("cpu"):
        assert choose_backend("op", "cpp", cpu, torch.float32, DTYPES) == "cpp"  # explicit argument wins
    monkeypatch.setenv("REFCOLOR_BACKEND", "cuda")
    with pytest.raises(ValueError, match="REFCOLOR_BACKEND"):
        choose_backend("op", "auto", cpu, torch.float32, DTYPES)


def test_import_without_compiled_extension_warns_once_and_falls_back():
    """A missing/broken refcolor._C: import works, one warning, ops run their reference path."""
    script = r"""
import json, sys, warnings
sys.modules["refcolor._C"] = None  # makes `import refcolor._C` raise ImportError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import refcolor
    from refcolor.ops import segment_hint_colors
    import torch
    S = torch.nn.functional.one_hot(torch.randint(0, 3, (1, 4, 4)), 3).permute(0, 3, 1, 2).float()
    hints, mask = segment_hint_colors(S, torch.rand(1, 3, 4, 4), 3)
    refcolor.available_backends()
ours = [str(w.message) for w in caught if "compiled kernels unavailable" in str(w.message)]
print(json.dumps({"warnings": ours, "cpu": refcolor.available_backends("cpu"), "mask": mask.sum().item()}))
"""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["warnings"]) == 1
    assert "cpp" not in result["cpu"] and "reference" in result["cpu"]
    assert result["mask"] == pytest.approx(16.0)


# ----------------------------------------------------------------------------- GPU self-check


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device as `auto` would see it on a GPU machine: every backend usable, sm_90; no
    self-check registered or run yet. Yields the calls the self-checks receive."""
    from refcolor import backends

    monkeypatch.setattr(backends, "backend_unavailable_reason", lambda backend, device: None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(backends, "_SELF_CHECKS", {})
    monkeypatch.setattr(backends, "_VERIFIED", {})
    monkeypatch.delenv("REFCOLOR_BACKEND", raising=False)
    monkeypatch.delenv("REFCOLOR_SELF_CHECK", raising=False)
    return backends


GPU_DTYPES = {"reference": (torch.float32, torch.float16), "cuda": (torch.float32,), "triton": (torch.float32,)}


def test_auto_checks_a_gpu_kernel_once_per_arch_and_dtype_and_falls_back_with_one_line(fake_gpu, caplog, monkeypatch):
    calls = []

    def check(backend, device, dtype):
        calls.append((backend, torch.cuda.get_device_capability(device), dtype))
        return "output 0 differs from the reference by 3.0e-01 (tolerance 1e-04)" if backend == "cuda" else None

    fake_gpu.register_self_check("fake_op", check)
    gpu = torch.device("cuda", 0)
    with caplog.at_level(logging.WARNING, logger="refcolor.backends"):
        assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "triton"
        assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "triton"
    assert calls == [("cuda", (9, 0), torch.float32), ("triton", (9, 0), torch.float32)]  # once each
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "fake_op: the cuda kernel failed its first-use check on sm_90 float32 (output 0 differs from the "
        "reference by 3.0e-01 (tolerance 1e-04)); using the next backend"
    ]
    # Another architecture is checked afresh; an explicit backend is the caller's choice, unchecked.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "triton"
    assert calls[2:] == [("cuda", (8, 0), torch.float32), ("triton", (8, 0), torch.float32)]
    assert choose_backend("fake_op", "cuda", gpu, torch.float32, GPU_DTYPES) == "cuda"
    assert len(calls) == 4


def test_self_check_runs_with_autograd_even_under_no_grad_and_inference_mode(fake_gpu):
    from refcolor.backends import compare_with_reference

    def check(backend, device, dtype):  # a real comparison on the CPU: it needs autograd
        x = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        return compare_with_reference(lambda t, backend: t.exp(), [x], backend, torch.float64)

    fake_gpu.register_self_check("fake_op", check)
    gpu = torch.device("cuda")
    with torch.inference_mode():
        assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "cuda"
    fake_gpu._VERIFIED.clear()
    with torch.no_grad():
        assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "cuda"
    assert fake_gpu.verified_kernels() == {("fake_op", "cuda", "sm_90", torch.float32): None}


def test_a_kernel_that_raises_or_has_no_check_is_never_picked_silently(fake_gpu, caplog):
    def check(backend, device, dtype):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore")

    fake_gpu.register_self_check("raises", check)
    gpu = torch.device("cuda")
    with caplog.at_level(logging.WARNING, logger="refcolor.backends"):
        assert choose_backend("raises", "auto", gpu, torch.float32, GPU_DTYPES) == "reference"
        assert choose_backend("unchecked", "auto", gpu, torch.float32, GPU_DTYPES) == "reference"
    text = caplog.text
    assert "it raised RuntimeError: CUDA error: no kernel image is available" in text and "more" not in text
    assert "unchecked has no self-check, so its cuda kernel is not verified on this GPU" in text
    # Not refcolor's kernels: the reference path is never self-checked.
    assert fake_gpu.verified_kernels().keys() == {
        ("raises", "cuda", "sm_90", torch.float32),
        ("raises", "triton", "sm_90", torch.float32),
        ("unchecked", "cuda", "sm_90", torch.float32),
        ("unchecked", "triton", "sm_90", torch.float32),
    }


def test_reference_forced_and_self_check_switched_off(fake_gpu, monkeypatch):
    calls = []
    fake_gpu.register_self_check("fake_op", lambda backend, device, dtype: calls.append(backend))
    gpu = torch.device("cuda")
    monkeypatch.setenv("REFCOLOR_BACKEND", "reference")
    assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "reference"
    assert fake_gpu.explain("fake_op", gpu, torch.float32, GPU_DTYPES) == [
        ("reference", "chosen: forced by REFCOLOR_BACKEND")
    ]
    monkeypatch.delenv("REFCOLOR_BACKEND")
    monkeypatch.setenv("REFCOLOR_SELF_CHECK", "0")
    assert choose_backend("fake_op", "auto", gpu, torch.float32, GPU_DTYPES) == "cuda"
    assert calls == []
    monkeypatch.delenv("REFCOLOR_SELF_CHECK")
    assert fake_gpu.explain("fake_op", gpu, torch.float32, GPU_DTYPES) == [("cuda", "chosen (self-check passed)")]
    assert fake_gpu.explain("fake_op", gpu, torch.float16, GPU_DTYPES) == [
        ("cuda", "it takes float32, got float16"),
        ("triton", "it takes float32, got float16"),
        ("reference", "chosen"),
    ]


def test_compare_with_reference_catches_outputs_and_gradients():
    from refcolor.backends import compare_with_reference

    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def good(t, backend):
        return t.sin() * 2

    def wrong_output(t, backend):
        return t.sin() * (2.001 if backend != "reference" else 2)

    def wrong_gradient(t, backend):  # same values, a different derivative
        return t.sin() * 2 + (t - t.detach()) * (0.5 if backend != "reference" else 0)

    assert compare_with_reference(good, [x], "cuda", torch.float64) is None
    assert compare_with_reference(wrong_output, [x], "cuda", torch.float64).startswith("output 0 differs")
    assert compare_with_reference(wrong_gradient, [x], "cuda", torch.float64).startswith("gradient of input 0 differs")
    assert compare_with_reference(wrong_output, [x.half()], "cuda", torch.float16) is None  # within 16-bit tolerance


@pytest.mark.skipif("cpp" not in refcolor.available_backends("cpu"), reason="extension not built")
@pytest.mark.parametrize("op", ["line_regions", "region_mean", "scft_attention", "segment_hint_colors", "tps_warp"])
def test_ops_register_self_checks_that_pass_for_a_correct_kernel(op):
    """The ops' own self-checks, run with the C++ CPU kernels in place of a GPU's (the same comparison)."""
    import importlib

    from refcolor import backends

    module = importlib.import_module(f"refcolor.ops.{op}")
    check = backends._SELF_CHECKS[op]
    for dtype in module.DTYPES["cpp"]:
        assert check("cpp", torch.device("cpu"), dtype) is None


@pytest.mark.skipif("cpp" not in refcolor.available_backends("cpu"), reason="extension not built")
def test_line_regions_self_check_catches_one_wrong_label(monkeypatch):
    import importlib

    from refcolor import backends

    lr = importlib.import_module("refcolor.ops.line_regions")  # refcolor.ops.line_regions is the function

    correct = lr._line_regions_op

    def one_off(sketch, threshold, gap, min_area, backend):
        labels = correct(sketch, threshold, gap, min_area, backend).clone()
        if gap > 0:  # only the gap-closing case is wrong: the check must reach it
            labels[1, 4, 7] += 1
        return labels

    monkeypatch.setattr(lr, "_line_regions_op", one_off)
    failure = backends._SELF_CHECKS["line_regions"]("cpp", torch.device("cpu"), torch.float32)
    assert failure is not None and failure.startswith("gap=3, min_area=6: 1 labels differ")
    assert "sample 1 pixel (4, 7)" in failure


@pytest.mark.skipif("cpp" not in refcolor.available_backends("cpu"), reason="extension not built")
def test_region_mean_self_check_catches_a_wrong_weight_gradient(monkeypatch):
    import importlib

    from refcolor import backends

    rm = importlib.import_module("refcolor.ops.region_mean")  # refcolor.ops.region_mean is the function

    forward, backward = rm._kernels("cpp")

    def scaled_backward(*args):
        grad_image, grad_weight = backward(*args)
        return grad_image, grad_weight * 1.01

    monkeypatch.setattr(rm, "_kernels", lambda backend: (forward, scaled_backward))
    failure = backends._SELF_CHECKS["region_mean"]("cpp", torch.device("cpu"), torch.float64)
    assert failure is not None and failure.startswith("with weight: gradient of input 2 differs")


def test_doctor_prints_every_op_per_device_with_reasons(capsys, monkeypatch):
    from refcolor.cli import main

    monkeypatch.delenv("REFCOLOR_BACKEND", raising=False)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "cpu:" in out
    for op in ("line_regions", "region_mean", "scft_attention", "segment_hint_colors", "tps_warp"):
        assert f"  {op} float32: " in out
    if "cpp" in refcolor.available_backends("cpu"):
        assert "  segment_hint_colors float32: cpp [chosen]" in out
    monkeypatch.setenv("REFCOLOR_BACKEND", "reference")
    assert main(["doctor", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "  tps_warp float64: reference [chosen: forced by REFCOLOR_BACKEND]" in out


def test_region_mean_self_check_passes_for_the_triton_kernels_under_the_interpreter():
    """The Triton kernels' own self-check, on CPU tensors under TRITON_INTERPRET=1 (conftest)."""
    pytest.importorskip("triton")
    import importlib

    from refcolor import backends

    importlib.import_module("refcolor.ops.region_mean")  # registers the check

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):  # no tl.dot: bf16 is exact here
        assert backends._SELF_CHECKS["region_mean"]("triton", torch.device("cpu"), dtype) is None

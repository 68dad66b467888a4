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

"""The audit of issue 28, each item as a GPU user would meet it, tested where a CPU can show it:
the build configuration (CUDA architectures, the torch floor, the ABI check at import), the Triton
softmax for any scale, 16-bit logits scaled before they are stored, and torch's deterministic mode in
the TPS backward."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_arch = _module(ROOT / "cuda_arch.py")


# ----------------------------------------------------------------------------- build


def test_no_arch_list_and_no_gpu_gets_the_default_list_torch_can_build(monkeypatch):
    """FORCE_CUDA=1 with no TORCH_CUDA_ARCH_LIST and no visible GPU: torch's own arch flags fail with
    an IndexError; setup.py passes cuda_arch's default list instead."""
    from torch.utils import cpp_extension

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    with pytest.raises(IndexError):  # what a build got before the default
        cpp_extension._get_cuda_arch_flags()
    archs = cuda_arch.arch_list(None, gpu_visible=False, buildable={"7.5", "8.0", "8.6", "9.0", "10.0", "12.0"})
    assert archs == "7.5;8.0;9.0;10.0+PTX"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", archs)
    flags = cpp_extension._get_cuda_arch_flags()
    assert "-gencode=arch=compute_90,code=sm_90" in flags and "-gencode=arch=compute_100,code=compute_100" in flags


def test_default_arch_list_keeps_what_nvcc_builds_and_leaves_visible_gpus_to_torch():
    assert cuda_arch.arch_list(None, gpu_visible=False, buildable={"8.0", "9.0"}) == "8.0;9.0+PTX"
    assert cuda_arch.arch_list(None, gpu_visible=True, buildable=None) is None
    assert cuda_arch.arch_list("9.0a", gpu_visible=False, buildable=None) == "9.0a"
    with pytest.raises(ValueError, match="builds none"):
        cuda_arch.arch_list(None, gpu_visible=False, buildable={"5.2"})


@pytest.mark.parametrize("requested", ["5.2", "8.0;5.0+PTX", "Maxwell", "Kepler+Tesla"])
def test_arch_list_below_the_declared_minimum_is_refused(requested):
    with pytest.raises(ValueError, match=r"compute capability >= 6\.0 \(atomicAdd on double\)"):
        cuda_arch.arch_list(requested, gpu_visible=False, buildable=None)


def test_arch_list_entries_are_parsed_or_named():
    assert cuda_arch.arch_list("6.0;7.0 8.0+PTX", gpu_visible=False, buildable=None) == "6.0;7.0 8.0+PTX"
    assert cuda_arch.arch_list("Ampere;Hopper", gpu_visible=False, buildable=None) == "Ampere;Hopper"
    with pytest.raises(ValueError, match="expected entries like 8.0"):
        cuda_arch.arch_list("sm_90", gpu_visible=False, buildable=None)


@pytest.mark.skipif(not os.path.exists("/usr/local/cuda/bin/nvcc"), reason="no CUDA toolkit")
def test_nvcc_archs_lists_real_architectures():
    archs = cuda_arch.nvcc_archs("/usr/local/cuda")
    assert archs and "9.0" in archs and all(a.count(".") == 1 for a in archs)


def test_torch_floor_is_one_version_the_tests_and_the_cuda_build_check_run():
    """pyproject's floor is what scripts/cuda_build_check.sh installs (PyPI's CUDA build of it) and
    builds against; the CPU tests run that release too."""
    floor = _module(ROOT / "scripts" / "torch_floor.py").torch_floor()
    from packaging.version import Version

    installed = Version(torch.__version__.split("+")[0])
    assert Version(floor) <= installed
    assert (installed.major, installed.minor) == Version(floor).release[:2]


_ABI = r"""
import importlib.abc, sys, types
mode = sys.argv[1]
if mode == "version":
    fake = types.ModuleType("refcolor._C")
    fake.torch_version = lambda: "2.4.1"
    fake.compiled_with_cuda = lambda: False
    sys.modules["refcolor._C"] = fake
else:
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "refcolor._C":
                raise ImportError("refcolor/_C.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev")
    sys.meta_path.insert(0, Broken())
try:
    import refcolor
except ImportError as exc:
    print("ImportError:", exc)
else:
    print("imported")
"""


@pytest.mark.parametrize("mode", ["version", "undefined-symbol"])
def test_extension_built_against_another_torch_is_a_loud_error_with_the_fix(mode):
    out = subprocess.run([sys.executable, "-c", _ABI, mode], capture_output=True, text=True, timeout=300)
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("ImportError:"), out.stdout + out.stderr
    assert "pip install --no-build-isolation -e ." in line
    assert torch.__version__ in line
    if mode == "version":
        assert "built against torch 2.4.1" in line


def test_extension_of_the_installed_torch_reports_its_version():
    from refcolor import _extension

    module = _extension.compiled_module()
    if module is None:
        pytest.skip("extension not built")
    assert module.torch_version() == torch.__version__.split("+")[0]


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("scale", [-0.3, 0.0, 1e-30, 0.7])
@pytest.mark.parametrize("block_m", [None, 16])  # one pass over the row, and two
def test_triton_softmax_has_no_nan_for_any_scale(scale, block_m):
    """Padding columns were -inf before the scaling: -inf * -0.3 = +inf, -inf * 0 = NaN. M = 37 is
    no multiple of a block."""
    pytest.importorskip("triton")
    from refcolor.kernels.scft_attention import softmax_rows_

    logits = torch.randn(2, 5, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = softmax_rows_(logits.clone(), scale, block_m=block_m)
    assert not got.isnan().any()
    torch.testing.assert_close(got, torch.softmax(scale * logits, dim=-1), rtol=1e-12, atol=1e-12)


def test_16bit_logits_are_scaled_before_they_are_stored():
    """d = 992 with entries of about 9: |q.k| ~ 8e4 overflows float16 (65504); the scaled logits
    (scale = d^-1/2) are ~2.5e3. Stored unscaled, the Triton gemm path gave inf - inf = NaN.
    (bfloat16 has float32's range: no overflow to show.)"""
    dtype = torch.float16
    pytest.importorskip("triton")
    from refcolor.kernels.scft_attention import attention_forward

    gen = torch.Generator().manual_seed(1)
    d = 992
    q = (9 + torch.rand(1, 4, d, generator=gen)).to(dtype)
    k = ((9 + torch.rand(1, 6, d, generator=gen)) * torch.tensor([1, 1, 1, -1, 1, -1.0])[:, None]).to(dtype)
    v = torch.randn(1, 6, 8, generator=gen).to(dtype)
    scale = d**-0.5
    out, probs = attention_forward(q, k, v, None, scale, "gemm")
    want = torch.softmax(scale * q.double() @ k.double().transpose(1, 2), dim=-1)
    assert torch.isfinite(probs).all() and torch.isfinite(out).all()
    torch.testing.assert_close(probs.double(), want, atol=2e-2, rtol=0)


# ----------------------------------------------------------------------------- determinism


def test_tps_backward_with_atomics_honours_deterministic_mode():
    from refcolor.ops.tps_warp import alert_if_nondeterministic

    cuda = torch.device("cuda", 0)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(True)
        for backend in ("cuda", "triton"):
            with pytest.raises(RuntimeError, match=r"tps_warp backward \(\w+ backend\) does not have a deterministic"):
                alert_if_nondeterministic(backend, cuda)
        alert_if_nondeterministic("reference", cuda)  # no atomics
        alert_if_nondeterministic("triton", torch.device("cpu"))  # the interpreter runs in order
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="deterministic"):
            alert_if_nondeterministic("cuda", cuda)
        torch.use_deterministic_algorithms(False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            alert_if_nondeterministic("cuda", cuda)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cuda_glue_of_tps_backward_alerts_torch_deterministic_mode():
    """The compiled CUDA backward goes through torch's own alert (the same error as torch's ops)."""
    glue = (ROOT / "csrc" / "tps_warp" / "cuda" / "tps_warp_cuda.cpp").read_text()
    body = glue[glue.index("at::Tensor backward_cuda") :]
    assert "alertNotDeterministic(" in body[: body.index("cuda::tps_warp_backward(")]

"""Compile checks of the CUDA sources on machines without a GPU.

The kernel files (.cu) include no torch headers, so nvcc builds them alone; they are compiled with
the half-precision flags torch's extension builder passes. The torch glue (.cpp in cuda/) is
syntax-checked with the host compiler against torch's and CUDA's headers."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
GLUE_FILES = sorted(p for p in CSRC.rglob("*.cpp") if p.parent.name == "cuda")
TORCH_NVCC_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
]


def test_kernel_sources_are_free_of_torch_cuda_headers():
    for path in CU_FILES:
        text = path.read_text()
        for banned in ("c10/cuda", "ATen/cuda", "torch/", "ATen/ATen.h"):
            assert banned not in text, f"{path.name} includes {banned}"


def _lowest_default_arch() -> str:
    """The oldest architecture of setup.py's default list that this nvcc builds (sm_75 with CUDA
    12/13): the kernels must compile there, which also proves the declared minimum (sm_60) holds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cuda_arch", ROOT / "cuda_arch.py")
    cuda_arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cuda_arch)
    nvcc = shutil.which("nvcc")
    buildable = cuda_arch.nvcc_archs(str(Path(nvcc).parents[1])) if nvcc else None
    arch = next(a for a in cuda_arch.DEFAULT_ARCHS if buildable is None or a in buildable)
    return "sm_" + arch.replace(".", "")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
@pytest.mark.parametrize("path", CU_FILES, ids=[p.name for p in CU_FILES])
def test_nvcc_compiles_kernel(path, tmp_path):
    arch = _lowest_default_arch()
    cmd = ["nvcc", "-std=c++17", f"-arch={arch}", "-c", str(path), "-o", str(tmp_path / "k.o"), f"-I{CSRC}"]
    cmd += TORCH_NVCC_FLAGS
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _cuda_include() -> Path | None:
    homes = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        "/usr/local/cuda",
        *sorted(glob.glob("/usr/local/cuda-*")),
    ]
    for home in filter(None, homes):
        if (Path(home) / "include" / "cuda_runtime_api.h").exists():
            return Path(home) / "include"
    return None


@pytest.mark.skipif(_cuda_include() is None, reason="CUDA headers not found")
@pytest.mark.parametrize("path", GLUE_FILES, ids=[p.name for p in GLUE_FILES])
def test_cuda_glue_passes_syntax_check(path, tmp_path):
    from torch.utils.cpp_extension import include_paths

    # A CPU-only torch ships c10/cuda headers but not this generated one (it only sets export macros).
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
    includes = [f"-I{p}" for p in (CSRC, *include_paths(), sysconfig.get_paths()["include"], _cuda_include(), tmp_path)]
    cmd = ["g++", "-std=c++20", "-fsyntax-only", "-DWITH_CUDA", *includes, str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

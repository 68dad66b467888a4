"""Code style, enforced by the test run (so CI enforces it): ruff lint and format check over the
tree, mypy over refcolor/ (configuration: [tool.ruff] and [tool.mypy] in pyproject.toml), and
clang-format over csrc/ (.clang-format). Each test fails with the tool's own output; README's
"Code style" says how to run and fix them locally.

mypy keeps its cache in .mypy_cache (ignored by git): about 30 s on a cold cache on 2 cores, a few
seconds warm."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC_SUFFIXES = (".h", ".cpp", ".cu", ".cuh")


def assert_tool_passes(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{output}", pytrace=False)


def python_tool(module: str) -> list[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (it comes with the test extra: pip install -e '.[test]')")
    return [sys.executable, "-m", module]


def test_ruff_check():
    assert_tool_passes([*python_tool("ruff"), "check", "--no-cache", "."])


def test_ruff_format():
    assert_tool_passes([*python_tool("ruff"), "format", "--check", "--no-cache", "."])


def test_mypy():
    assert_tool_passes([*python_tool("mypy")])  # files and options from [tool.mypy]


def test_clang_format():
    binary = shutil.which("clang-format")
    if binary is None:
        pytest.skip("clang-format not found (Debian/Ubuntu: apt-get install clang-format; .ci/run installs it)")
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*") if p.suffix in CSRC_SUFFIXES)
    assert sources, "no C++/CUDA sources found under csrc/"
    assert_tool_passes([binary, "--dry-run", "--Werror", *sources])

"""`kernels/` installs as `refcolor.kernels`, never as a top-level `kernels` module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_maps_kernels_to_refcolor_kernels(tmp_path):
    """Checked in a fresh interpreter outside the checkout, as a user sees the installed package."""
    script = (
        "import importlib.util, json; s = importlib.util.find_spec('refcolor.kernels'); "
        "t = importlib.util.find_spec('kernels'); "
        "print(json.dumps([s.origin, t.origin if t else None]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    ours, top_level = json.loads(out.stdout)
    assert Path(ours) == ROOT / "kernels" / "__init__.py" or Path(ours).parent.parent.name == "refcolor"
    # A PyPI package named `kernels` may be installed; ours must not answer to that name.
    assert top_level is None or Path(top_level).parent != ROOT / "kernels"


@pytest.mark.slow
def test_regular_wheel_holds_refcolor_kernels_and_no_top_level_kernels(tmp_path):
    """A regular (non-editable) build: setuptools maps kernels/ to refcolor/kernels/ in the wheel.
    REFCOLOR_NO_EXT=1 skips compiling, which does not affect the package layout."""
    env = {**os.environ, "REFCOLOR_NO_EXT": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("refcolor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "refcolor/kernels/__init__.py" in names
    assert "refcolor/kernels/segment_hint_colors.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    # Every subpackage and the bundled data (a package missing from pyproject's list would be
    # silently left out of a regular install).
    for init in (ROOT / "refcolor").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, f"{init.parent.name} is not packaged"
    for asset in ("sample.png", "demo/sketch.png", "demo/reference.png", "samples/SOURCES.md"):
        assert f"refcolor/assets/{asset}" in names
    for asset in ("index.html", "studio.css", "studio.js", "common.js", "fill.js"):  # the studio's page, vendored
        assert f"refcolor/studio/static/{asset}" in names

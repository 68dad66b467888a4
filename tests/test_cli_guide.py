"""`refcolor guide` end to end on the bundled sample with a random-weights model, and its one-line errors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from refcolor import cli
from refcolor.models.guiding_painter import GuidingPainter, GuidingPainterConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights

SAMPLE = Path(str(resources.files("refcolor") / "assets" / "sample.png"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory holding a random 32px "guide" model."""
    path = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    config = GuidingPainterConfig.preset("small", image_size=32)
    save_weights(path / "model.safetensors", GuidingPainter(config), describe("guide", config))
    return path


def _colors(tmp_path: Path, data, name: str = "colors.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_guide_writes_overlay_and_regions_json(tmp_path, run_dir, capsys):
    out = tmp_path / "out"
    assert cli.main(["guide", str(SAMPLE), "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    with Image.open(SAMPLE) as sketch:
        size = sketch.size
    data = json.loads((out / "sample_regions.json").read_text())
    assert data["sketch"] == str(SAMPLE) and data["size"] == list(size)
    regions = data["regions"]
    assert [r["rank"] for r in regions] == list(range(1, len(regions) + 1))
    assert sum(r["pixels"] for r in regions) == size[0] * size[1]
    assert all(
        0 <= r["bbox"][0] <= r["bbox"][2] < size[0] and 0 <= r["bbox"][1] <= r["bbox"][3] < size[1] for r in regions
    )
    with Image.open(out / "sample_regions.png") as overlay:
        assert overlay.size == size and overlay.format == "PNG"
    assert f"{len(regions)} regions" in stdout and "sample_regions.png" in stdout


def test_guide_colorizes_at_the_sketch_size(tmp_path, run_dir, capsys):
    colors = _colors(tmp_path, ["#c03020", [20, 120, 220]])  # the sample's snapped regions: 2 with this model
    output = tmp_path / "painted" / "result.png"
    assert cli.main(["guide", str(SAMPLE), "--checkpoint", str(run_dir), "--colors", colors, "-o", str(output)]) == 0
    with Image.open(output) as painted, Image.open(SAMPLE) as sketch:
        assert painted.size == sketch.size and painted.mode == "RGB"
    assert "coloured 2 of" in capsys.readouterr().out
    assert not list(tmp_path.glob("*_regions.*"))  # no --out: no overlay


def test_guide_colors_with_out_writes_both(tmp_path, run_dir):
    colors = _colors(tmp_path, ["#c03020"])
    weights = str(run_dir / "model.safetensors")
    assert cli.main(["guide", str(SAMPLE), "--checkpoint", weights, "--colors", colors, "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("sample_*")} == {
        "sample_regions.png",
        "sample_regions.json",
        "sample_colorized.png",
    }


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing sketch", "image not found"),
        ("missing checkpoint", "checkpoint not found"),
        ("corrupt checkpoint", "not a valid safetensors"),
        ("not a list", "colors must be a list"),
        ("bad hex", r"colors[1]"),
        ("out of range", "256 is outside 0..255"),
        ("bad json", "not valid JSON"),
        ("too many", "31 colours given but the sketch has only"),
        ("output without colors", "-o/--output needs --colors"),
        ("unknown format", "unknown image format"),
    ],
)
def test_guide_errors_are_one_line_exit_1(tmp_path, run_dir, capsys, case, words):
    sketch, checkpoint, extra = str(SAMPLE), str(run_dir), ["--out", str(tmp_path / "out")]
    colors = {
        "not a list": {"1": "#fff"},
        "bad hex": ["#fff", "#ggg"],
        "out of range": [[0, 256, 0]],
        "bad json": '["#fff",',
        "too many": ["#808080"] * 31,  # more than Nc = 30: never fits
    }
    if case == "missing sketch":
        sketch = str(tmp_path / "nope.png")
    elif case == "missing checkpoint":
        checkpoint = str(tmp_path / "no_run")
    elif case == "corrupt checkpoint":
        checkpoint = tmp_path / "junk.safetensors"
        checkpoint.write_bytes(bytes(range(256)) * 8)
    elif case in colors:
        extra = ["--colors", _colors(tmp_path, colors[case]), "-o", str(tmp_path / "o.png")]
    elif case == "output without colors":
        extra = ["-o", str(tmp_path / "o.png")]
    elif case == "unknown format":
        extra = ["--colors", _colors(tmp_path, ["#fff"]), "-o", str(tmp_path / "o.xyz")]
    assert cli.main(["guide", sketch, "--checkpoint", str(checkpoint), *extra]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("refcolor guide: error: ") and words in err, err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "o.png").exists()

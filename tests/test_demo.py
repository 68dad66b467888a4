"""The main-job demo (`refcolor demo`) on the bundled sample, and its CLI error handling."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from PIL import Image

from refcolor import cli, demo


def test_demo_cli_writes_strip_and_psnr_rises(tmp_path, capsys):
    out = tmp_path / "d.png"
    hints = [0, 1, 4, 12]
    assert cli.main(["demo", "--out", str(out), "--num-segments", "12", "--hints", "0,1,4,12", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("backend: ")
    table = [
        line.split() for line in lines[lines.index(next(text for text in lines if text.split()[:1] == ["Nh"])) + 1 :]
    ]
    assert [int(row[0]) for row in table] == hints
    coverage = [float(row[1]) for row in table]
    psnr = [float(row[2]) for row in table]
    assert coverage[0] == 0.0 and coverage[-1] == 1.0
    assert all(a <= b for a, b in pairwise(coverage))
    assert all(a <= b for a, b in pairwise(psnr)), psnr

    _, _, H, W = demo.load_image().shape  # the bundled sample
    panels = 2 + len(hints)
    with Image.open(out) as strip:
        assert strip.format == "PNG"
        assert strip.size == (panels * W + (panels - 1) * demo.GAP, H + demo.CAPTION)


def test_kmeans_regions_are_deterministic_and_largest_first():
    image = demo.load_image()
    a = demo.kmeans_segments(image, 8, seed=3)
    assert torch.equal(a, demo.kmeans_segments(image, 8, seed=3))
    assert torch.all(a.sum(1) == 1)  # one-hot: every pixel in exactly one region
    counts = a.sum(dim=(0, 2, 3))
    assert torch.all(counts[:-1] >= counts[1:])


@pytest.mark.parametrize(
    "args, words",
    [
        (["--image", "/nonexistent/picture.png"], "No such file"),
        (["--hints", "1,x"], "--hints"),
        (["--num-segments", "5", "--hints", "0,6"], "num_segments=5"),
    ],
)
def test_demo_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--out", str(tmp_path / "d.png"), *args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and words in err, err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "d.png").exists()

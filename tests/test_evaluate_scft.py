"""SCFT's augmented-self evaluation (refcolor.evaluation.scft_eval) and `refcolor evaluate --model scft`,
checked with models whose figures are known: an oracle returning the target (and the true
correspondence as its attention), one copying the reference, and the untrained colorizer."""

from __future__ import annotations

import csv
import math
import shutil

import pytest
import torch

from refcolor import cli
from refcolor.data import ImageFolder, sample_images_dir
from refcolor.evaluation import report_files
from refcolor.evaluation import scft_eval as S
from refcolor.models.registry import describe
from refcolor.models.scft_colorizer import SCFTColorizer, SCFTColorizerOutput
from refcolor.models.weights import save_weights
from refcolor.ops.tps_correspondence import tps_correspondence

SIZE = 32
FEATURES = (4, 4)  # the oracle's attention lattice

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three bundled sample images."""
    folder = tmp_path_factory.mktemp("images")
    for path in sorted(sample_images_dir().glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


class Oracle(torch.nn.Module):
    """Knows the protocol: rebuilds each image's triple (same seed) and returns its target, with the
    one-hot true correspondence as attention; given another image's reference, returns that reference."""

    def __init__(self, images, seed=0, attention=True):
        super().__init__()
        from refcolor.data import ImageFolder

        self.dataset = ImageFolder(images, size=SIZE)
        self.seed, self.attention, self.calls = seed, attention, 0
        self.weight = torch.nn.Parameter(torch.zeros(()))  # something for .parameters() to return

    def forward(self, sketch, reference, return_attention=False):
        if not return_attention:
            return reference  # the palette call: copy the reference's colours exactly
        b = sketch.shape[0]
        triples = [
            S.augmented_self_triple(self.dataset[self.calls + i]["image"], self.calls + i, self.seed) for i in range(b)
        ]
        self.calls += b
        target = torch.cat([t["target"] for t in triples]) * 2 - 1
        attention = None
        if self.attention:
            index, _ = tps_correspondence(torch.cat([t["grid"] for t in triples]), FEATURES, FEATURES)
            attention = torch.nn.functional.one_hot(index, FEATURES[0] * FEATURES[1]).float()
        return SCFTColorizerOutput(target, None, None, attention, FEATURES, FEATURES)


class CopyReference(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, sketch, reference, return_attention=False):
        return reference


def test_oracle_scores_the_maximum(images):
    result = S.evaluate_scft(Oracle(images), images, image_size=SIZE, batch_size=2)
    assert result.num_images == 3 and result.image_size == SIZE
    assert torch.all(result.psnr[:, 0] == S.MAX_PSNR)
    torch.testing.assert_close(result.ssim[:, 0], torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    acc = result.accuracy()
    assert acc["exact"] == 1 and acc["within_one"] == 1 and acc["valid_cells"] > 0
    assert acc["chance_exact"] == pytest.approx(1 / 16)
    assert torch.all(result.palette[:, 0] == 1)  # the palette call returned the reference itself
    # The baselines do not depend on the model.
    copy = S.evaluate_scft(CopyReference(), images, image_size=SIZE, batch_size=3)
    baselines = S.METHODS.index("copy_reference")
    torch.testing.assert_close(result.psnr[:, baselines:], copy.psnr[:, baselines:], rtol=0, atol=0)


def test_copying_the_reference_equals_the_copy_baseline(images):
    result = S.evaluate_scft(CopyReference(), images, image_size=SIZE, batch_size=2)
    # Equal up to the float rounding of the [0, 1] -> [-1, 1] -> [0, 1] round trip.
    copy, fill = S.METHODS.index("copy_reference"), S.METHODS.index("mean_colour")
    torch.testing.assert_close(result.psnr[:, 0], result.psnr[:, copy], atol=1e-4, rtol=0)
    torch.testing.assert_close(result.ssim[:, 0], result.ssim[:, copy], atol=1e-6, rtol=0)
    assert result.correspondence is None and result.accuracy() is None  # no attention: no figure
    assert torch.all(result.psnr < 60) and torch.all(result.psnr[:, fill] < result.psnr[:, copy] + 20)
    rows = {r["method"]: r for r in result.rows()}
    assert set(rows) == {
        "model",
        "model_flat_median",
        "model_flat_mean",
        "copy_reference",
        "mean_colour",
        "own_colours",
    }
    assert math.isnan(rows["own_colours"]["psnr_mean"]) and 0 < rows["own_colours"]["palette_mean"] <= 1


def test_results_do_not_depend_on_batch_size_and_the_seed_matters(images):
    model = SCFTColorizer.from_preset("small", image_size=SIZE)
    one = S.evaluate_scft(model, images, batch_size=1)
    three = S.evaluate_scft(model, images, batch_size=3)
    torch.testing.assert_close(one.psnr, three.psnr, atol=1e-4, rtol=0)
    torch.testing.assert_close(one.palette, three.palette, atol=1e-6, rtol=0)
    assert one.correspondence["valid"] == three.correspondence["valid"] > 0
    other_seed = S.evaluate_scft(model, images, batch_size=3, seed=1)
    copy = S.METHODS.index("copy_reference")
    assert not torch.equal(other_seed.psnr[:, copy], three.psnr[:, copy])
    assert 0 <= three.accuracy()["exact"] <= three.accuracy()["within_one"] <= 1


def test_a_single_image_has_no_palette_figure(images):
    result = S.evaluate_scft(CopyReference(), images, image_size=SIZE, max_images=1)
    assert result.palette is None and len(result.rows()) == len(S.METHODS)


def test_mean_colour_fill_is_the_flat_mean_under_the_lines():
    reference = torch.rand(2, 3, 8, 8)
    sketch = torch.ones(2, 1, 8, 8)
    sketch[:, :, 3] = 0  # a black line
    sketch[:, :, 5] = 0.5  # a grey stroke
    fill = S.mean_colour_fill(sketch, reference)
    mean = reference.mean(dim=(-2, -1))
    torch.testing.assert_close(fill[:, :, 0, 0], mean)
    assert torch.all(fill[:, :, 3] == 0)
    torch.testing.assert_close(fill[:, :, 5, 2], mean / 2)


def test_palette_intersection_of_equal_and_disjoint_palettes():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    green = torch.zeros(1, 3, 4, 4)
    green[:, 1] = 1
    half = torch.cat([red[..., :2], green[..., 2:]], dim=-1)
    assert S.palette_intersection(red, red).item() == pytest.approx(1)
    assert S.palette_intersection(red, green).item() == 0
    assert S.palette_intersection(half, red).item() == pytest.approx(0.5)
    # White and grey pixels are not part of the palette; an image without colour matches nothing.
    red_on_white = torch.ones(1, 3, 4, 4)
    red_on_white[..., :1] = red[..., :1]
    assert S.palette_intersection(red_on_white, red).item() == pytest.approx(1)
    gray = torch.full((1, 3, 4, 4), 0.5)
    assert S.palette_intersection(gray, gray).item() == 0


def test_correspondence_hits_against_a_known_grid():
    """Identity warp: cell i corresponds to cell i. An attention shifted one column right is never
    exact and always within one cell (except in the last column, where it wraps to the next row)."""
    h = w = 4
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None]
    eye = torch.eye(h * w)[None]
    hits = S.correspondence_hits(eye, grid, (h, w), (h, w))
    assert hits["valid"].item() == 16 and hits["exact"].item() == 16 and hits["within_one"].item() == 16
    shifted = torch.roll(eye, 1, dims=-1)
    hits = S.correspondence_hits(shifted, grid, (h, w), (h, w))
    assert hits["exact"].item() == 0 and hits["within_one"].item() == 12
    # Chance: each cell's 3 x 3 neighbourhood clipped to the lattice: 4 corners x 4, 8 edges x 6, 4 inner x 9.
    assert hits["chance_within_one"].item() == pytest.approx((4 * 4 + 8 * 6 + 4 * 9) / 16)
    assert hits["same_exact"].item() == 16 and hits["same_within_one"].item() == 16
    with pytest.raises(ValueError, match="attention: expected shape"):
        S.correspondence_hits(eye, grid, (h, w), (2, 2))


def test_same_position_guess_misses_a_shift_of_two_cells():
    """A warp that moves the content two cells (half the image) sideways: the same-position guess is
    never within one cell of the truth, while an attention that follows the shift is always exact."""
    h = w = 4
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    grid = torch.stack([xs + 1.0, ys], dim=-1)[None]  # reference pixel x came from target x + half the width
    index, valid = S.tps_correspondence(grid, (h, w), (h, w))
    following = torch.nn.functional.one_hot(index, h * w).double()
    hits = S.correspondence_hits(following, grid, (h, w), (h, w))
    assert hits["valid"].item() > 0
    assert hits["exact"].item() == hits["valid"].item()
    assert hits["same_exact"].item() == 0 and hits["same_within_one"].item() == 0


def test_report_files_with_and_without_matplotlib(images, tmp_path, monkeypatch):
    result = S.evaluate_scft(Oracle(images), images, image_size=SIZE, batch_size=3)
    paths = S.write_report(result, tmp_path / "with")
    assert sorted(paths) == ["csv", "md", "png"]
    pytest.importorskip("PIL")
    from PIL import Image

    with Image.open(paths["png"]) as chart:
        assert chart.format == "PNG" and len(chart.getcolors(1 << 20)) > 10
    with open(paths["csv"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["method", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "palette_mean"]
    assert rows[1][:2] == ["model", f"{S.MAX_PSNR:.4f}"]
    assert ["top1_exact", "1.0000"] == rows[-2][:2]
    markdown = paths["md"].read_text()
    assert "| model | 100.00 +- 0.00 |" in markdown and "| within one cell | 100.0% |" in markdown

    monkeypatch.setattr(report_files, "plotting_available", lambda: False)
    paths = S.write_report(result, tmp_path / "without")
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == ["scft_eval.csv", "scft_eval.md"]


def test_bad_arguments_are_named(images):
    model = CopyReference()
    with pytest.raises(ValueError, match="image_size: the model has no config.image_size"):
        S.evaluate_scft(model, images)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        S.evaluate_scft(model, images, image_size=SIZE, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        S.evaluate_scft(model, images, image_size=SIZE, seed=-1)


def test_evaluate_cli(tmp_path, images, capsys, monkeypatch):
    torch.manual_seed(0)
    model = SCFTColorizer.from_preset("small", image_size=SIZE)
    save_weights(tmp_path / "model.safetensors", model, describe("scft", model.config))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", "scft", "--checkpoint", str(tmp_path), "--data", str(images), "--out", str(out)]
    assert cli.main([*args, "--max-images", "2", "--batch-size", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "| copy_reference |" in stdout and "| within one cell |" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["scft_eval.csv", "scft_eval.md", "scft_eval.png"]
    assert f"Data: {images.resolve()}." in (out / "scft_eval.md").read_text()  # the report names its data

    monkeypatch.setattr(report_files, "plotting_available", lambda: False)
    assert cli.main([*args, "--max-images", "2"]) == 0
    assert "no plot: matplotlib is not installed (pip install refcolor[plot])" in capsys.readouterr().out


def test_flat_rows_are_the_flats_of_the_output(images):
    result = S.evaluate_scft(Oracle(images), images, image_size=SIZE, batch_size=3)
    triples = [S.augmented_self_triple(ImageFolder(images, size=SIZE)[i]["image"], i) for i in range(3)]
    target, sketch = torch.cat([t["target"] for t in triples]), torch.cat([t["sketch"] for t in triples])
    for name, flat in zip(("model_flat_median", "model_flat_mean"), S.flat_outputs(target, sketch), strict=True):
        torch.testing.assert_close(
            result.psnr[:, S.METHODS.index(name)], S.psnr(flat, target).double(), atol=1e-4, rtol=0
        )
    assert torch.all(result.psnr[:, 1:3] < S.MAX_PSNR)  # the oracle's target is not flat: its flats lose

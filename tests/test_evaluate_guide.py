"""GuidingPainter's PSNR-vs-hints evaluation (refcolor.evaluation.guide_psnr) and `refcolor evaluate`."""

from __future__ import annotations

import csv
import math
import shutil
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from refcolor import cli
from refcolor.data import sample_images_dir, xdog
from refcolor.evaluation import evaluate_guide_psnr, guide_psnr, hinted_outputs, report_files, write_report
from refcolor.evaluation.guide_psnr import HintCurve, regions_to_channels
from refcolor.models.guiding_painter import GuidingPainter, GuidingPainterConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from refcolor.ops import line_regions
from tests.helpers import HintColors

NC = 8  # few regions keep the (Nc + 1)-point curve cheap


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three bundled sample images."""
    folder = tmp_path_factory.mktemp("images")
    for path in sorted(sample_images_dir().glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def _model() -> GuidingPainter:
    torch.manual_seed(0)
    return GuidingPainter(GuidingPainterConfig.preset("small", image_size=32, num_segments=NC))


def test_batched_counts_match_forward_in_eval_mode():
    model = _model().eval()
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target, sketch = image * 2 - 1, xdog(image) * 2 - 1
    with torch.no_grad():
        segments = model.segmentation.segments(sketch)
        outputs, masks = hinted_outputs(model, sketch, target, [0, 3, NC])
        for out, mask, n in zip(outputs, masks, [0, 3, NC], strict=True):
            expected = model(sketch, target, tau=None, num_hints=regions_to_channels(segments, [n])[0])
            assert torch.allclose(out, expected.output, atol=1e-5)
            assert torch.equal(mask, expected.hints[:, 3:])


def test_hints_count_the_regions_a_user_is_shown_not_empty_channels():
    # Sketch 0 uses channels 0, 2, 3 (1 and 4 empty); sketch 1 uses 0 to 3 (4 empty).
    labels = torch.tensor([[[0, 2], [3, 3]], [[0, 1], [2, 3]]]).repeat_interleave(2, 1).repeat_interleave(2, 2)
    segments = F.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    channels = regions_to_channels(segments, [0, 1, 2, 3, 4, 5]).tolist()
    assert channels[0] == [0, 0]
    assert channels[1] == [1, 1]
    assert channels[2] == [3, 2]  # the 2nd region of sketch 0 is channel 2
    assert channels[3] == [4, 3]
    assert channels[4] == [5, 4]  # sketch 0 has only 3: all hinted
    assert channels[5] == [5, 5]
    # The same numbering as `refcolor guide`: its k-th colour goes to the k-th present channel.
    present = [torch.bincount(lab.flatten(), minlength=5).nonzero().flatten().tolist() for lab in labels]
    assert present == [[0, 2, 3], [0, 1, 2, 3]]
    assert [p[1] + 1 for p in present] == regions_to_channels(segments, [2])[0].tolist()


def test_curve_has_one_finite_row_per_hint_count(images):
    model = _model().train()
    curve = evaluate_guide_psnr(model, images, batch_size=2)
    assert model.training  # the mode is restored
    assert curve.hints == list(range(NC + 1)) and len(curve.rows()) == NC + 1
    assert curve.num_images == 3 and curve.per_image.shape == (3, NC + 1) and curve.image_size == 32
    assert all(math.isfinite(v) for v in curve.psnr_mean + curve.psnr_std + [curve.hint_map_psnr])
    assert curve.coverage[0] == 0.0 and curve.coverage[-1] == pytest.approx(1.0)
    assert all(a <= b + 1e-12 for a, b in pairwise(curve.coverage))
    # Deterministic, and the batching does not change the numbers.
    again = evaluate_guide_psnr(model, images, batch_size=3, samples_per_pass=5, max_images=2)
    assert torch.allclose(again.per_image, curve.per_image[:2], atol=1e-6)


def test_oracle_colorizer_improves_with_every_hint(images):
    model = _model()
    model.colorization = HintColors()
    curve = evaluate_guide_psnr(model, images, hint_counts=[0, 2, NC])
    # A region's mean colour is its least-squares fill: each hint can only lower the error.
    assert curve.psnr_mean[0] < curve.psnr_mean[1] <= curve.psnr_mean[2]
    assert curve.psnr_mean[-1] == pytest.approx(curve.hint_map_psnr, abs=1e-6)


def test_step_changes_are_paired_means_with_their_confidence_interval():
    per_image = torch.tensor([[10.0, 11.0, 10.5], [12.0, 12.5, 13.5], [9.0, 10.5, 9.0]], dtype=torch.float64)
    curve = HintCurve(
        hints=[0, 1, 2],
        psnr_mean=per_image.mean(0).tolist(),
        psnr_std=per_image.std(0, correction=0).tolist(),
        coverage=[0.0, 0.3, 0.6],
        hint_map_psnr=15.0,
        per_image=per_image,
        paths=["a", "b", "c"],
        image_size=32,
    )
    changes = curve.step_changes()
    assert changes[0] is None
    # 0 -> 1: diffs 1, 0.5, 1.5 (mean 1, sample std 0.5); 1 -> 2: -0.5, 1, -1.5 (mean -1/3)
    assert changes[1] == pytest.approx((1.0, 1.96 * 0.5 / math.sqrt(3)))
    assert changes[2][0] == pytest.approx(-1 / 3)
    line = guide_psnr.steps_line(curve)
    assert "falls or stays at: 2 (-0.3333 dB)" in line and "interval over these images" in line and "at 2 hints" in line
    assert "| 1 | 11.33 |" in guide_psnr.markdown_table(curve) and "+1.000 +- 0.566" in guide_psnr.markdown_table(curve)


def test_bad_arguments(images):
    with pytest.raises(ValueError, match="hint_counts"):
        evaluate_guide_psnr(_model(), images, hint_counts=[NC + 1])
    with pytest.raises(ValueError, match="max_images"):
        evaluate_guide_psnr(_model(), images, max_images=0)


def test_report_files(images, tmp_path, monkeypatch):
    curve = evaluate_guide_psnr(_model(), images, max_images=2, hint_counts=[0, 1, 4])
    paths = write_report(curve, tmp_path / "report")
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["num_hints"] for r in rows] == ["0", "1", "4", "ceiling (median)", "ceiling (mean)"]
    assert [float(r["psnr_mean"]) for r in rows[:3]] == pytest.approx(curve.psnr_mean, abs=1e-4)
    assert rows[0]["change_mean"] == "" and float(rows[2]["change_mean"]) == pytest.approx(
        float((curve.per_image[:, 2] - curve.per_image[:, 1]).mean()), abs=1e-4
    )
    markdown = paths["md"].read_text()
    assert "| hints | PSNR mean (dB) |" in markdown and f"{curve.hint_map_psnr:.2f} dB" in markdown
    with Image.open(paths["png"]) as chart:
        assert chart.format == "PNG" and chart.size == (720, 460)
        assert len(chart.getcolors(1 << 16)) > 10  # something was drawn
    monkeypatch.setattr(report_files, "plotting_available", lambda: False)
    paths = write_report(curve, tmp_path / "without")
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == ["psnr_vs_hints.csv", "psnr_vs_hints.md"]


def test_evaluate_cli(tmp_path, images, capsys):
    model = _model()
    save_weights(tmp_path / "model.safetensors", model, describe("guide", model.config))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", "guide", "--checkpoint", str(tmp_path), "--out", str(out)]
    assert cli.main([*args, "--data", str(images), "--max-images", "2", "--batch-size", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "| hints |" in stdout and f"| {NC} |" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["psnr_vs_hints.csv", "psnr_vs_hints.md", "psnr_vs_hints.png"]

    assert cli.main([*args, "--data", str(tmp_path / "none")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"refcolor evaluate: error: image folder not found: {tmp_path / 'none'}"
    assert "Traceback" not in captured.err


def test_evaluate_requires_data_and_the_report_names_it(tmp_path, images, capsys):
    model = _model()
    save_weights(tmp_path / "model.safetensors", model, describe("guide", model.config))
    args = ["evaluate", "--model", "guide", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "eval")]
    # The bundled (training) set is never a silent default: without --data (or scft's --pairs), an error.
    assert cli.main(args) == 1 and "--data DIR is required" in capsys.readouterr().err
    assert cli.main([*args, "--data", str(images), "--max-images", "1"]) == 0
    markdown = (tmp_path / "eval" / "psnr_vs_hints.md").read_text()
    assert f"Data: {images.resolve()}." in markdown


def test_the_report_flags_the_bundled_training_set():
    curve = evaluate_guide_psnr(_model(), sample_images_dir(), max_images=1, hint_counts=[0])
    assert curve.data.startswith(str(sample_images_dir().resolve())) and "not held out" in curve.data


class FixedSegmentation(torch.nn.Module):
    """A segmentation net whose argmax puts channel 0 on the left half, channel 2 on all of the
    right half but one pixel, and channel 5 on that pixel: three regions, two of them large."""

    def segments(self, sketch, tau=None, generator=None):
        B, _, H, W = sketch.shape
        channel = torch.zeros(B, H, W, dtype=torch.int64)
        channel[:, :, W // 2 :] = 2
        channel[:, 0, -1] = 5
        return torch.nn.functional.one_hot(channel, NC).permute(0, 3, 1, 2).to(sketch.dtype)


def test_regions_proposed_per_sketch(images, tmp_path):
    model = _model()
    model.segmentation = FixedSegmentation()
    curve = evaluate_guide_psnr(model, images, hint_counts=[0, 1])
    assert curve.regions.tolist() == [3, 3, 3]
    assert curve.large_regions.tolist() == [2, 2, 2]  # one pixel of 32 x 32 is under 0.5%
    markdown = write_report(curve, tmp_path / "report")["md"].read_text()
    assert "median 3 (mean 3.0, min 3) holding any pixel" in markdown
    assert "median 2 (mean 2.0, min 2) covering at least 0.5% of the image" in markdown


def test_flat_modes_and_ceilings(images, tmp_path):
    model = _model()
    curve = evaluate_guide_psnr(model, images, hint_counts=[0, 2, NC], batch_size=2)
    assert list(curve.modes) == list(guide_psnr.FLAT_MODES) and list(curve.ceilings) == list(guide_psnr.CEILINGS)
    assert all(v.shape == (3, 3) and torch.isfinite(v).all() for v in curve.modes.values())
    # The ceilings, recomputed: every line region of the sketch filled with the target's own colour.
    from refcolor.data.image_folder import ImageFolder
    from refcolor.data.sketch_preparation import prepare_sketch
    from refcolor.inference import flats

    image = torch.stack([ImageFolder(images, size=32)[i]["image"] for i in range(3)])
    paper = prepare_sketch(image, extract="always")
    for method in guide_psnr.CEILINGS:
        flat = flats.flatten(image, paper, method=method).image
        expected = 10 * torch.log10(1 / ((flat.double() - image.double()) ** 2).mean(dim=(1, 2, 3)))
        assert torch.allclose(curve.ceilings[method], expected, atol=1e-4)
    # Snapped output: 2 hints numbered on the snapped regions, painted from them where hinted, from
    # the model's own regions elsewhere; with every region hinted, the snapped regions alone.
    with torch.no_grad():
        sketch = paper * 2 - 1
        own = model.segmentation.segments(sketch).argmax(dim=1)
        snapped = flats.snap_regions(own, line_regions(paper))
        one_hot = F.one_hot(snapped, NC).permute(0, 3, 1, 2).float()
        for column, n in ((1, 2), (2, NC)):
            k = regions_to_channels(one_hot, [n])[0]
            painted = F.one_hot(flats.paint_channels(own, snapped, k), NC).permute(0, 3, 1, 2).float()
            if n == NC:
                assert torch.equal(painted, one_hot)
            hints = model.hint_generator(painted, image * 2 - 1, num_hints=k)
            output = model.paint(sketch, hints, painted)
            expected = 10 * torch.log10(1 / (((output + 1) / 2 - image).double() ** 2).mean(dim=(1, 2, 3)))
            assert torch.allclose(curve.modes["snapped"][:, column], expected, atol=1e-4)
    # With no hint the model paints from its own regions: snapped is soft.
    assert torch.allclose(curve.modes["snapped"][:, 0], curve.per_image[:, 0], atol=1e-6)
    assert curve.border_share("snapped") == 1.0  # gap 0: snapped borders run along the lines
    markdown = write_report(curve, tmp_path / "report")["md"].read_text()
    assert "## Soft against snapped and flat output" in markdown
    assert "| ceiling: every line region its target median |" in markdown and "flat (mean) (dB)" in markdown
    with open(tmp_path / "report" / "psnr_vs_hints.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["num_hints"] for r in rows] == ["0", "2", str(NC), "ceiling (median)", "ceiling (mean)"]
    assert float(rows[1]["psnr_snapped"]) == pytest.approx(float(curve.modes["snapped"][:, 1].mean()), abs=1e-4)
    assert float(rows[3]["psnr_mean"]) == pytest.approx(float(curve.ceilings["median"].mean()), abs=1e-4)

"""Flats (refcolor.inference.flats): one colour per line region, hints kept, the RGBA layer with
transparent lines, regions snapped to the drawing, and flat=True / --flat / --flats-layer on the
three colorizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from refcolor import cli
from refcolor import images as im
from refcolor.inference import flats
from refcolor.inference.colorizer import Colorizer
from refcolor.inference.guided import GuidedColorizer
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from refcolor.ops import line_regions
from tests.helpers import FixedRegions

pytestmark = pytest.mark.usefixtures("one_thread")


def _drawing(width: int = 60, height: int = 48) -> Image.Image:
    """A frame split by a vertical stroke, an ellipse in the right half and a 1 px diagonal: six
    areas of different sizes, some of them thin."""
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, width - 3, height - 3], outline=0, width=2)
    draw.line([width // 2, 2, width // 2, height - 3], fill=0, width=2)
    draw.ellipse([width // 2 + 6, 8, width - 8, height - 10], outline=0, width=2)
    draw.line([4, height - 5, width // 2 - 2, 4], fill=0, width=1)
    return image


def _sketch_tensor(image: Image.Image) -> torch.Tensor:
    return im.to_tensor(image)[:, :1]


def assert_flat(output: torch.Tensor, sketch: torch.Tensor) -> int:
    """Done-when criterion (a): within every line region (gap 0) larger than 50 px, away from the
    lines (no line pixel in the 3x3 neighbourhood), the colour varies by less than 2/255.
    output (3, H, W), sketch (1, H, W) in [0, 1]; returns the number of regions checked."""
    labels = line_regions(sketch[None], 0.8, 0, 0)[0]
    line = (sketch < 0.8).float()
    near = F.max_pool2d(line[None], 3, stride=1, padding=1)[0, 0] > 0
    checked = 0
    for region in labels.unique():
        inside = labels == region
        if inside.sum() <= 50:
            continue
        values = output[:, inside & ~near]
        if values.shape[1] == 0:  # a region of lines and their edges only
            continue
        spread = (values.amax(dim=1) - values.amin(dim=1)).max()
        assert spread < 2 / 255, f"region {int(region)} varies by {float(spread) * 255:.2f}/255"
        checked += 1
    return checked


def _noisy_colours(shape, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(shape[0], 3, 4, 4, generator=g), size=shape[-2:], mode="bilinear")
    return (smooth + 0.05 * torch.rand(*smooth.shape, generator=g)).clamp(0, 1)


# --------------------------------------------------------------------------- region colours


def test_region_median_is_the_lower_median_of_the_weighted_pixels():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 9, 11, generator=g)
    labels = torch.randint(0, 5, (2, 9, 11), generator=g)
    labels[1, labels[1] == 4] = 3  # region 4 of sample 1 is empty
    weight = (torch.rand(2, 1, 9, 11, generator=g) > 0.3).float()
    weight[0, 0, labels[0] == 2] = 0  # region 2 of sample 0 has only weight-0 pixels: all its pixels count
    medians = flats.region_median(image, labels, 5, weight)
    for b in range(2):
        for r in range(5):
            inside = labels[b] == r
            chosen = inside & (weight[b, 0] > 0) if bool((inside & (weight[b, 0] > 0)).any()) else inside
            expected = image[b][:, chosen].median(dim=1).values if chosen.any() else torch.zeros(3)
            assert torch.equal(medians[b, r], expected), (b, r)


def test_median_ignores_a_border_bleed_that_tints_the_mean():
    labels = torch.zeros(1, 10, 10, dtype=torch.int64)
    colours = torch.zeros(1, 3, 10, 10)
    colours[:, 0] = 0.8  # a red region ...
    colours[:, :, :, :3] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]  # ... with blue bled over 30% of it
    paper = torch.ones(1, 1, 10, 10, dtype=torch.bool)
    median = flats.region_colours(colours, labels, 1, paper, "median")[0, 0]
    mean = flats.region_colours(colours, labels, 1, paper, "mean")[0, 0]
    assert torch.allclose(median, torch.tensor([0.8, 0.0, 0.0]))
    assert torch.allclose(mean, torch.tensor([0.56, 0.0, 0.3]))


# --------------------------------------------------------------------------- flatten


def test_flatten_gives_one_colour_per_region_with_the_lines_on_top():
    sketch = _sketch_tensor(_drawing())
    sketch[0, 0, 20, 10] = 0.85  # a faint speck inside an area: paper, as the regions see it
    colours = _noisy_colours(sketch.shape)
    with pytest.raises(AssertionError):
        assert_flat(colours[0], sketch[0])  # the soft input is not flat: the check can fail
    result = flats.flatten(colours, sketch)
    assert assert_flat(result.image[0], sketch[0]) >= 4
    line = sketch < flats.THRESHOLD
    assert torch.all(
        result.image[line.expand_as(result.image)] <= sketch.expand_as(result.image)[line.expand_as(result.image)]
    )
    assert torch.equal(result.image, result.layer[:, :3] * flats.ink(sketch))
    assert torch.equal(result.labels, line_regions(sketch))


def test_ink_keeps_strokes_and_their_edges_and_drops_faint_specks_away_from_lines():
    sketch = torch.ones(1, 1, 7, 9)
    sketch[0, 0, 3, 1] = 0.0  # a stroke pixel
    sketch[0, 0, 3, 2] = 0.9  # its antialiased edge
    sketch[0, 0, 3, 7] = 0.85  # a faint speck, 5 px from the stroke
    ink = flats.ink(sketch)
    assert ink[0, 0, 3, 1] == 0 and ink[0, 0, 3, 2] == sketch[0, 0, 3, 2] and ink[0, 0, 3, 7] == 1
    assert torch.equal(ink[sketch == 1], sketch[sketch == 1])


def test_hinted_regions_take_the_hint_colour_exactly():
    sketch = _sketch_tensor(_drawing())
    colours = _noisy_colours(sketch.shape)
    labels = line_regions(sketch)
    big = int(torch.bincount(labels.flatten()).argmax())
    hint_mask = (labels == big)[:, None]
    hints = torch.zeros(1, 3, *sketch.shape[-2:])
    hints[:, 1] = 0.25
    result = flats.flatten(colours, sketch, hints=hints, hint_mask=hint_mask)
    assert result.hinted[0].tolist() == [r == big for r in range(result.colours.shape[1])]
    assert torch.equal(result.colours[0, big], torch.tensor([0.0, 0.25, 0.0]))
    paper = (labels[0] == big) & (sketch[0, 0] == 1)
    assert torch.all(result.image[0][:, paper] == torch.tensor([0.0, 0.25, 0.0])[:, None])
    # A hint on a few pixels of a region (not most of its paper) leaves the model's colour.
    few = torch.zeros_like(hint_mask)
    few[0, 0, 5:7, 5:7] = True
    assert not flats.flatten(colours, sketch, hints=hints, hint_mask=few).hinted.any()


def test_the_flats_layer_is_rgba_with_transparent_lines(tmp_path):
    sketch = _sketch_tensor(_drawing())
    result = flats.flatten(_noisy_colours(sketch.shape), sketch)
    path = flats.save_layer(result.layer[0], tmp_path / "layer.png")
    with Image.open(path) as layer:
        assert layer.mode == "RGBA" and layer.size == (60, 48)
        pixels = torch.from_numpy(np.asarray(layer).copy())
    line = sketch[0, 0] < flats.THRESHOLD
    assert torch.all(pixels[..., 3][line] == 0) and torch.all(pixels[..., 3][~line] == 255)
    expected = (result.layer[0, :3].permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert torch.equal(pixels[..., :3][~line], expected[~line])


def test_flatten_errors_are_one_line():
    sketch = _sketch_tensor(_drawing())
    with pytest.raises(ValueError, match="argument 'method' must be one of median, mean, got 'mode'"):
        flats.flatten(_noisy_colours(sketch.shape), sketch, method="mode")
    with pytest.raises(ValueError, match=r"argument 'sketch' must be \(B, 1, H, W\)"):
        flats.flatten(_noisy_colours(sketch.shape), sketch[..., 1:])
    with pytest.raises(ValueError, match="'hints' and 'hint_mask' must be given together"):
        flats.flatten(_noisy_colours(sketch.shape), sketch, hints=torch.zeros(1, 3, 48, 60))


# --------------------------------------------------------------------------- snapping


def test_snap_takes_the_majority_channel_of_each_line_region_ties_to_priority():
    labels = torch.tensor([[[0, 0, 0, 1, 1, 2, 2, 2]]])
    channels = torch.tensor([[[4, 4, 1, 3, 1, 0, 2, 2]]])
    assert flats.snap_regions(channels, labels).tolist() == [[[4, 4, 4, 1, 1, 2, 2, 2]]]
    # Channel numbers (the model's priority order) are kept, never renumbered.
    assert set(flats.snap_regions(channels, labels).unique().tolist()) <= set(channels.unique().tolist())


def test_paint_channels_hinted_channels_cover_their_snapped_regions_the_rest_is_the_models():
    own = torch.tensor([[[0, 0, 1, 1, 2, 3]], [[0, 0, 1, 1, 2, 3]]])
    snapped = torch.tensor([[[0, 1, 1, 1, 3, 3]], [[0, 1, 1, 1, 3, 3]]])
    painted = flats.paint_channels(own, snapped, torch.tensor([2, 0]))
    assert painted[0].tolist() == [[0, 1, 1, 1, 2, 3]]  # channels 0, 1 hinted: their snapped pixels
    assert painted[1].tolist() == own[1].tolist()  # no hint: the model's own regions
    assert flats.paint_channels(own, snapped, torch.tensor([4, 4])).tolist() == snapped.tolist()


def test_snapped_regions_follow_the_lines_and_keep_the_priority_order():
    model = GuidingPainter(GuidingPainterConfig.preset("small", image_size=32))
    model.segmentation = FixedRegions(model.num_segments)  # regions by position: blind to the drawing
    drawing = _drawing()
    sketch = _sketch_tensor(drawing)
    raw = GuidedColorizer(model, snap=False).regions(drawing)
    snapped = GuidedColorizer(model).regions(drawing)
    labels = line_regions(sketch)[0]
    for region in labels.unique():  # every line region lies in one numbered region
        assert snapped.labels[labels == region].unique().numel() == 1
    assert raw.channels == sorted(raw.channels) and snapped.channels == sorted(snapped.channels)
    assert set(snapped.channels) <= set(raw.channels)
    on, total = flats.borders_on_lines(snapped.labels[None], sketch)
    assert int(total) > 0 and int(on) == int(total)  # gap 0: every border pixel touches a line
    on_raw, total_raw = flats.borders_on_lines(raw.labels[None], sketch)
    assert int(on_raw) < int(total_raw)  # the model's own borders cross the paper


# --------------------------------------------------------------------------- the colorizers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat_models")
    torch.manual_seed(0)
    scft = SCFTColorizerConfig.preset("small", image_size=32)
    save_weights(root / "scft.safetensors", SCFTColorizer(scft), describe("scft", scft))
    guide = GuidingPainterConfig.preset("small", image_size=32)
    save_weights(root / "guide.safetensors", GuidingPainter(guide), describe("guide", guide))
    drawing = _drawing(80, 64)
    drawing.save(root / "sketch.png")
    im.tensor_to_pil(torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))).save(root / "ref.png")
    return root


def test_guided_flat_output_is_flat_and_keeps_the_given_colours(models):
    painter = GuidedColorizer.from_checkpoint(models / "guide.safetensors")
    sketch = _sketch_tensor(Image.open(models / "sketch.png"))
    soft, result = painter.flats(models / "sketch.png", ["#c03020"])
    assert soft.shape == result.image.shape == (1, 3, 64, 80)
    picture = im.to_tensor(painter.colorize(models / "sketch.png", ["#c03020"], flat=True))[0]
    assert torch.equal(picture, im.to_tensor(im.tensor_to_pil(result.image[0]))[0])
    assert assert_flat(picture, sketch[0]) >= 4
    regions = painter.regions(models / "sketch.png")
    first = (regions.labels == 1) & (sketch[0, 0] == 1)
    assert torch.all((picture[:, first] * 255).round() == torch.tensor([192.0, 48, 32])[:, None])
    assert painter.colorize(models / "sketch.png", ["#c03020"]).size == (80, 64)  # soft by default


def test_colorizer_flat_true(models):
    colorizer = Colorizer.from_checkpoint(models / "scft.safetensors", flat=True)
    sketch = _sketch_tensor(Image.open(models / "sketch.png"))
    picture = colorizer.colorize_tensor(sketch.expand(1, 3, -1, -1), models / "ref.png")
    assert assert_flat(picture[0], sketch[0]) >= 4
    soft = colorizer.colorize_tensor(sketch.expand(1, 3, -1, -1), models / "ref.png", flat=False)
    with pytest.raises(AssertionError):
        assert_flat(soft[0], sketch[0])


def test_colorize_cli_flat_and_flats_layer(models, tmp_path, capsys):
    out, layer = tmp_path / "out.png", tmp_path / "layer.png"
    args = [
        "colorize",
        str(models / "sketch.png"),
        "-r",
        str(models / "ref.png"),
        "-c",
        str(models / "scft.safetensors"),
    ]
    assert cli.main(args + ["-o", str(out), "--flat", "--flats-layer", str(layer)]) == 0
    sketch = _sketch_tensor(Image.open(models / "sketch.png"))
    assert assert_flat(im.to_tensor(out)[0], sketch[0]) >= 4
    with Image.open(layer) as rgba:
        assert rgba.mode == "RGBA" and rgba.size == (80, 64)
        alpha = torch.from_numpy(np.asarray(rgba)[..., 3].copy())
    assert torch.equal(alpha == 0, sketch[0, 0] < flats.THRESHOLD)
    assert "layer.png" in capsys.readouterr().out


def test_guide_cli_flat_and_flats_layer(models, tmp_path):
    colors = tmp_path / "colors.json"
    colors.write_text(json.dumps(["#2050d0"]))
    out, layer = tmp_path / "out.png", tmp_path / "layer.png"
    base = ["guide", str(models / "sketch.png"), "--checkpoint", str(models / "guide.safetensors")]
    assert cli.main(base + ["--colors", str(colors), "-o", str(out), "--flat", "--flats-layer", str(layer)]) == 0
    sketch = _sketch_tensor(Image.open(models / "sketch.png"))
    assert assert_flat(im.to_tensor(out)[0], sketch[0]) >= 4
    with Image.open(layer) as rgba:
        assert rgba.mode == "RGBA"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--flats-layer", "x.png"], "--flats-layer needs --colors"),
        (["--gap", "-1", "--out", "d"], "--gap must be >= 0, got -1"),
    ],
)
def test_guide_cli_flat_errors(models, capsys, extra, words):
    assert cli.main(["guide", str(models / "sketch.png"), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_exemplar_flat_true_on_line_art():
    from refcolor.inference.exemplar import ExemplarColorizer
    from refcolor.models import ExemplarColorizer as ExemplarModel
    from refcolor.models import ExemplarColorizerConfig

    torch.manual_seed(0)
    model = ExemplarModel(ExemplarColorizerConfig(image_size=32, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16)))
    colorizer = ExemplarColorizer(model, flat=True)
    drawing = _drawing()
    exemplar = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2))
    picture = colorizer(drawing, exemplar)
    sketch = _sketch_tensor(drawing)
    assert picture.size == (60, 48)
    assert assert_flat(im.to_tensor(picture)[0], sketch[0]) >= 4
    soft, result = colorizer.flats(drawing, exemplar)
    assert torch.equal(soft, colorizer.colorize_tensor(drawing, exemplar, flat=False))
    assert torch.equal(result.image, colorizer.colorize_tensor(drawing, exemplar))


def test_colorize_cli_folder_writes_a_flats_layer_per_image(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _drawing(40, 32).save(folder / "a.png")
    _drawing(50, 30).save(folder / "b.jpg")
    args = ["colorize", str(folder), "-r", str(models / "ref.png"), "-c", str(models / "scft.safetensors")]
    assert cli.main(args + ["-o", str(tmp_path / "out"), "--flats-layer", str(tmp_path / "layers")]) == 0
    for name, size in (("a.png", (40, 32)), ("b.png", (50, 30))):
        with Image.open(tmp_path / "layers" / name) as layer, Image.open(tmp_path / "out" / name) as out:
            assert layer.mode == "RGBA" and layer.size == size and out.mode == "RGB" and out.size == size


def test_guide_cli_no_snap_numbers_the_models_own_regions(models, tmp_path):
    base = ["guide", str(models / "sketch.png"), "--checkpoint", str(models / "guide.safetensors")]
    assert cli.main(base + ["--out", str(tmp_path / "snapped")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "own"), "--no-snap"]) == 0
    snapped = json.loads((tmp_path / "snapped" / "sketch_regions.json").read_text())["regions"]
    own = json.loads((tmp_path / "own" / "sketch_regions.json").read_text())["regions"]
    expected = GuidedColorizer.from_checkpoint(models / "guide.safetensors", snap=False).regions(models / "sketch.png")
    assert [r["channel"] for r in own] == expected.channels
    assert {r["channel"] for r in snapped} <= {r["channel"] for r in own} and len(snapped) <= len(own)

"""GuidedColorizer (refcolor.inference.guided): compact region numbering at the sketch's size, the
overlay, colour parsing and the mapping of region colours onto the model's region channels."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw

from refcolor.inference.guided import GuidedColorizer, parse_colors, read_colors
from refcolor.models.guiding_painter import GuidingPainter, GuidingPainterConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from tests.helpers import BOTTOM_LEFT, RIGHT, TOP_LEFT, FixedRegions, HintColors

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**overrides) -> GuidingPainter:
    torch.manual_seed(0)
    return GuidingPainter(GuidingPainterConfig.preset("small", image_size=32, **overrides))


def _controlled(**options) -> GuidedColorizer:
    """Fixed geometric regions (tests.helpers.FixedRegions); unsnapped by default, so that the
    tests of the numbering and the colour mapping see the model's regions as they are (snapping
    has tests of its own in tests/test_flats.py)."""
    model = _model()
    model.segmentation = FixedRegions(model.num_segments)
    return GuidedColorizer(model, **({"snap": False} | options))


def _sketch(width: int = 45, height: int = 37) -> Image.Image:
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).ellipse([4, 4, width - 6, height - 5], outline=0, width=2)
    return image


def test_regions_are_compact_in_priority_order_at_the_sketch_size():
    regions = _controlled().regions(_sketch())
    assert regions.labels.shape == (37, 45) and regions.labels.dtype == torch.int64
    assert regions.working_size == (32, 40)
    assert [r["rank"] for r in regions.regions] == [1, 2, 3]
    assert [r["channel"] for r in regions.regions] == [RIGHT, BOTTOM_LEFT, TOP_LEFT]
    assert regions.channels == [RIGHT, BOTTOM_LEFT, TOP_LEFT]
    assert sorted(regions.labels.unique().tolist()) == [1, 2, 3]
    assert sum(r["pixels"] for r in regions.regions) == 37 * 45
    for r in regions.regions:
        mask = regions.labels == r["rank"]
        ys, xs = mask.nonzero(as_tuple=True)
        assert r["pixels"] == int(mask.sum())
        assert r["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]  # inclusive
        x, y = r["anchor"]
        assert regions.labels[y, x] == r["rank"]
    right = regions.regions[0]["bbox"]
    assert right[1:] == [0, 44, 36] and 20 <= right[0] <= 24  # the right half, all rows


def test_regions_of_a_random_model_cover_every_pixel_once():
    painter = GuidedColorizer(_model())
    regions = painter.regions(torch.rand(3, 29, 51))  # a colour image: its outline is extracted
    ranks = [r["rank"] for r in regions.regions]
    assert ranks == list(range(1, len(ranks) + 1))
    assert regions.channels == sorted(regions.channels) and len(set(regions.channels)) == len(ranks)
    assert regions.labels.shape == (29, 51) and int(regions.labels.min()) >= 1
    assert sorted(regions.labels.unique().tolist()) == ranks
    assert sum(r["pixels"] for r in regions.regions) == 29 * 51
    assert regions.to_json()["size"] == [51, 29]


def test_overlay_tints_each_region_at_the_sketch_size():
    regions = _controlled().regions(_sketch(61, 47))
    overlay = regions.overlay()
    assert overlay.mode == "RGB" and overlay.size == (61, 47)
    # Background pixels far from lines and numbers: one tint per region, all different.
    tints = {rank: overlay.getpixel(xy) for rank, xy in ((1, (58, 2)), (2, (2, 44)), (3, (2, 2)))}
    assert [int(regions.labels[y, x]) for x, y in ((58, 2), (2, 44), (2, 2))] == [1, 2, 3]
    assert len(set(tints.values())) == 3


def test_colors_land_on_the_channels_of_their_regions(monkeypatch):
    painter = _controlled()
    calls = []
    colorize = painter.model.colorize
    monkeypatch.setattr(painter.model, "colorize", lambda *a, **k: calls.append((a, k)) or colorize(*a, **k))
    painter.colorize(_sketch(), ["#ff0000", [0, 0, 255]])  # regions 1 and 2
    ((args, kwargs),) = calls
    table = args[1]
    assert table.shape == (1, BOTTOM_LEFT + 1, 3)  # channels 0..last mapped channel
    assert torch.equal(table[0, RIGHT], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(table[0, BOTTOM_LEFT], torch.tensor([-1.0, -1.0, 1.0]))
    assert kwargs["num_hints"] == [BOTTOM_LEFT + 1]


def test_colorized_pixels_take_their_regions_colours():
    painter = _controlled()
    painter.model.colorization = HintColors()
    out = painter.colorize(_sketch(), ["#ff8000", "#00f"])
    assert isinstance(out, Image.Image) and out.size == (45, 37) and out.mode == "RGB"
    assert out.getpixel((40, 18)) == (255, 128, 0)  # region 1: right half
    assert out.getpixel((4, 33)) == (0, 0, 255)  # region 2: bottom-left
    assert all(abs(v - 128) <= 1 for v in out.getpixel((4, 3)))  # region 3: no hint (gray oracle)
    none = painter.colorize(_sketch(), [])
    assert all(abs(v - 128) <= 1 for v in none.getpixel((40, 18)))


def test_too_many_colors_is_a_clear_error():
    with pytest.raises(ValueError, match=r"4 colours given but the sketch has only 3 regions \(numbered 1..3\)"):
        _controlled().colorize(_sketch(), ["#000"] * 4)


def test_return_types_follow_the_input(tmp_path):
    painter = GuidedColorizer(_model())
    path = tmp_path / "s.png"
    _sketch(33, 20).save(path)
    assert painter.colorize(str(path), ["#123456"]).size == (33, 20)
    assert painter.colorize(_sketch(33, 20), ["#123456"]).size == (33, 20)
    batch = torch.rand(2, 1, 20, 33)
    out = painter.colorize(batch, ["#123456"])
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 20, 33)
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert painter.colorize(torch.rand(3, 20, 33), []).shape == (1, 3, 20, 33)
    with pytest.raises(ValueError, match="one sketch"):
        painter.regions(batch)


@pytest.mark.parametrize(
    "sketch, words",
    [
        (torch.rand(1, 20, 20) * 2 - 1, r"argument 'sketch' must hold values in \[0, 1\], got \[-"),
        (
            torch.rand(2, 20, 20),
            r"argument 'sketch' must be a tensor \(C, H, W\) or \(B, C, H, W\).*got shape \(2, 20, 20\)",
        ),
        (torch.zeros(1, 20, 20, dtype=torch.int32), "floating point in \\[0, 1\\] or uint8"),
    ],
)
def test_bad_sketch_tensors(sketch, words):
    with pytest.raises(ValueError, match=words):
        GuidedColorizer(_model()).regions(sketch)


def test_parse_colors_forms():
    assert parse_colors(["#ff8000", "#F80", [1, 2, 3], (0, 255, 7)]) == [
        (255, 128, 0),
        (255, 136, 0),
        (1, 2, 3),
        (0, 255, 7),
    ]
    assert parse_colors([]) == []


@pytest.mark.parametrize(
    "data, words",
    [
        ({"1": "#fff"}, "colors must be a list"),
        ("#ffffff", "colors must be a list"),
        (["#fff", "#12345"], r"colors\[1\].*not a hex colour"),
        (["red"], r"colors\[0\].*'red'"),
        ([[1, 2]], r"colors\[0\].*2 numbers, not 3"),
        ([[0, 0, 0], [1, 2, 300]], r"colors\[1\].*300 is outside 0..255"),
        ([[-1, 0, 0]], r"-1 is outside 0..255"),
        ([[1.5, 2, 3]], r"1.5 is not an integer"),
        ([[True, 2, 3]], r"True is not an integer"),
        ([None], r"colors\[0\].*NoneType"),
    ],
)
def test_parse_colors_errors_name_the_entry(data, words):
    with pytest.raises(ValueError, match=words) as err:
        parse_colors(data)
    assert "\n" not in str(err.value)


def test_read_colors_files(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps(["#000000", [255, 255, 255]]))
    assert read_colors(good) == [(0, 0, 0), (255, 255, 255)]
    with pytest.raises(FileNotFoundError, match="colors file not found"):
        read_colors(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('["#000", ')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_colors(bad)
    bad.write_text('["#000", [1, 2, 3, 4]]')
    with pytest.raises(ValueError, match=r"bad.json: colors\[1\]"):
        read_colors(bad)


def test_from_checkpoint_matches_the_model(tmp_path):
    model = _model()
    save_weights(tmp_path / "model.safetensors", model, describe("guide", model.config))
    painter = GuidedColorizer.from_checkpoint(tmp_path)  # a run directory holding model.safetensors
    assert painter.source == tmp_path / "model.safetensors"
    sketch = torch.rand(1, 1, 24, 40)
    expected = GuidedColorizer(model).colorize(sketch, ["#abcdef", "#fedcba"])
    assert torch.allclose(painter.colorize(sketch, ["#abcdef", "#fedcba"]), expected, atol=1e-6)
    with pytest.raises(ValueError, match="device"):
        GuidedColorizer.from_checkpoint(tmp_path, device="tpu")

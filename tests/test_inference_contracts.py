"""Contracts of refcolor.inference that the mutation run (scripts/mutation_score.py) found untested:
the extract mode reaching the sketch preparation, argument errors, the hint count of an empty colour
list, label anchors (scaled-down distance transform, its fallback, the deepest point of a
non-convex region), the overlay's tint and number placement, and small input / output forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import refcolor
from refcolor import images as im
from refcolor.data.sketch_preparation import pad_to_multiple, prepare_sketch, scaled_size
from refcolor.images import region_palette
from refcolor.inference import guided
from refcolor.inference.guided import GuidedColorizer, RegionMap, region_map
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


class RecordingModel(SCFTColorizer):
    """Returns its sketch as a gray image and keeps every sketch it was given."""

    def forward(self, sketch, reference):
        self.seen.append(sketch.clone())
        return sketch.expand(-1, 3, -1, -1)


def _colorizer(**kwargs) -> refcolor.Colorizer:
    torch.manual_seed(0)
    model = RecordingModel(SCFTColorizerConfig.preset("small", image_size=32))
    model.seen = []
    return refcolor.Colorizer(model, **kwargs)


def _two_colour_image(height: int = 32, width: int = 32) -> torch.Tensor:
    """(1, 3, H, W): red left half, blue right half, no lines at all."""
    image = torch.zeros(1, 3, height, width)
    image[:, 0, :, : width // 2] = 0.9
    image[:, 2, :, width // 2 :] = 0.9
    return image


# --------------------------------------------------------------------------- Colorizer


@pytest.mark.parametrize("size", [0, -3, True, 1.5, "32"])
def test_colorizer_rejects_a_bad_size(size):
    with pytest.raises(ValueError, match=r"^Colorizer: argument 'size' must be a positive int or None, got ") as err:
        _colorizer(size=size)
    assert str(err.value).endswith(repr(size)) and "\n" not in str(err.value)


def test_colorizer_size_defaults_to_the_training_size():
    assert _colorizer().size == 32
    assert _colorizer(size=48).size == 48


@pytest.mark.parametrize("extract", ["auto", "always", "never"])
def test_prepare_sketch_uses_the_extract_mode(extract):
    colorizer = _colorizer(extract=extract)
    image = _two_colour_image(40, 24)
    model_input, box = colorizer.prepare_sketch(image)
    expected, expected_box = pad_to_multiple(prepare_sketch(image, (53, 32), extract=extract), 8, 1.0)
    assert box == expected_box == (1, 0, 53, 32)
    torch.testing.assert_close(model_input, im.to_model_range(expected), rtol=0, atol=0)


def test_extract_always_outlines_a_colour_image_and_never_keeps_it():
    image = _two_colour_image()
    outlined = _colorizer(extract="always")(image, image)[0, 0]
    as_is = _colorizer(extract="never")(image, image)[0, 0]
    # Far from the colour edge (columns 15 | 16): the outline is white paper, the image as is is
    # its dark luminance (red 0.9 -> 0.27, blue 0.9 -> 0.10 with Rec. 601 weights, about).
    for x in (3, 28):
        assert float(outlined[:, x].min()) > 0.95
    assert 0.15 < float(as_is[16, 3]) < 0.4 and 0.03 < float(as_is[16, 28]) < 0.2
    assert float(outlined[:, 14:18].min()) < 0.5  # the edge between the colours is drawn as a line


def test_extract_mode_reaches_the_full_resolution_lines():
    # A 64 px colour image at working size 32: keep_lines multiplies by the image's own lines at
    # 64 px, prepared with the same extract mode; "never" keeps its dark luminance, "always" white.
    image = _two_colour_image(64, 64)
    never = _colorizer(extract="never")(image, image)[0, 0]
    always = _colorizer(extract="always")(image, image)[0, 0]
    assert float(never[32, 4]) < 0.15 and float(always[32, 4]) > 0.9


def test_colorize_file_writes_png_without_a_suffix(tmp_path):
    sketch = tmp_path / "sketch.png"
    Image.new("L", (20, 24), 255).save(sketch)
    colorizer = _colorizer()
    out = colorizer.colorize_file(sketch, Image.new("RGB", (8, 8), (10, 200, 30)), tmp_path / "new" / "sub" / "result")
    assert out == tmp_path / "new" / "sub" / "result"
    with Image.open(out) as written:
        assert written.format == "PNG" and written.size == (20, 24)
    jpeg = colorizer.colorize_file(sketch, Image.new("RGB", (8, 8), (10, 200, 30)), tmp_path / "result.jpg")
    with Image.open(jpeg) as written:
        assert written.format == "JPEG"


def test_prepare_reference_expands_a_batch_of_gray_references():
    colorizer = _colorizer()
    gray = torch.rand(3, 1, 20, 30)
    out = colorizer.prepare_reference(gray)
    h, w = scaled_size(20, 30, 32)  # (32, 48): already multiples of 8
    assert out.shape == (3, 3, h, w)
    for b in range(3):
        for c in range(3):
            torch.testing.assert_close(out[b, c], out[b, 0], rtol=0, atol=0)
    colour = colorizer.prepare_reference(gray.expand(-1, 3, -1, -1))
    torch.testing.assert_close(out, colour, rtol=0, atol=0)


def test_prepare_reference_rounds_sides_to_the_model_multiple():
    out = _colorizer().prepare_reference(torch.rand(1, 3, 20, 37))
    # scaled_size(20, 37, 32) = (32, 59): 59 rounds to 56 (nearest multiple of 8), not up to 64.
    assert out.shape == (1, 3, 32, 56)


# --------------------------------------------------------------------------- GuidedColorizer


def _painter() -> GuidedColorizer:
    torch.manual_seed(0)
    return GuidedColorizer(GuidingPainter(GuidingPainterConfig.preset("small", image_size=32)))  # depth 3


def test_empty_colour_list_gives_no_hints(monkeypatch):
    # The model's own regions (snap=False): this is the call contract of model.colorize; the snapped
    # path paints through flats.paint_channels (tests/test_flats.py).
    torch.manual_seed(0)
    painter = GuidedColorizer(GuidingPainter(GuidingPainterConfig.preset("small", image_size=32)), snap=False)
    calls = []
    colorize = painter.model.colorize
    monkeypatch.setattr(painter.model, "colorize", lambda *a, **k: calls.append((a, k)) or colorize(*a, **k))
    out = painter.colorize(torch.ones(2, 1, 20, 28), [])
    ((args, kwargs),) = calls
    assert kwargs["num_hints"] == [0, 0]  # no region hinted (the colour table may hold a padding row)
    assert args[1].shape[0] == 2 and args[1].shape[2] == 3
    assert out.shape == (2, 3, 20, 28)


def test_regions_rejects_a_batch():
    with pytest.raises(ValueError, match=r"^sketch: regions\(\) takes one sketch, got a batch of 2$"):
        _painter().regions(torch.ones(2, 1, 16, 16))


@pytest.mark.parametrize(
    "height, width, expected",
    [(32, 32, (32, 32)), (37, 45, (32, 40)), (45, 37, (40, 32)), (16, 20, (32, 40)), (100, 30, (112, 32))],
)
def test_working_size(height, width, expected):
    # Shorter side at 32, the aspect kept (45 * 32 / 37 = 38.9 -> 39, 100 * 32 / 30 = 106.7 -> 107),
    # padded up to multiples of 2**3.
    assert _painter().working_size(height, width) == expected


# --------------------------------------------------------------------------- anchors


def _brute_force_depth(labels: torch.Tensor) -> torch.Tensor:
    """Chessboard distance to the nearest boundary pixel (a pixel with another label or the image
    border in its 3x3 neighbourhood), computed pixel by pixel."""
    H, W = labels.shape
    boundary = []
    for y in range(H):
        for x in range(W):
            window = labels[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            if y in (0, H - 1) or x in (0, W - 1) or bool((window != labels[y, x]).any()):
                boundary.append((y, x))
    by, bx = torch.tensor(boundary).T
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return torch.maximum((ys[..., None] - by).abs(), (xs[..., None] - bx).abs()).amin(-1).float()


def test_distance_to_boundary_of_a_region_touching_the_border():
    labels = torch.ones(7, 9, dtype=torch.int64)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    expected = torch.minimum(torch.minimum(ys, 6 - ys), torch.minimum(xs, 8 - xs)).float()
    torch.testing.assert_close(guided._distance_to_boundary(labels), expected, rtol=0, atol=0)
    labels[:, 6:] = 2  # a second region along the right border
    depth = guided._distance_to_boundary(labels)
    torch.testing.assert_close(depth, _brute_force_depth(labels), rtol=0, atol=0)
    assert depth[3].tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 0]


def _l_shape() -> torch.Tensor:
    """Region 1: an L (a 6 px arm down the left border, a 14 px foot along the bottom); 2: the rest."""
    labels = torch.full((40, 40), 2, dtype=torch.int64)
    labels[:, :6] = 1
    labels[26:, :] = 1
    return labels


def test_anchor_of_an_l_is_its_deepest_point_not_its_centroid():
    labels = _l_shape()
    (x, y), other = guided._anchors(labels, 2)
    depth = _brute_force_depth(labels)
    assert labels[y, x] == 1
    assert depth[y, x] == depth[labels == 1].max() == 6  # the middle rows of the foot
    cx, cy = guided._nearest_to_centroid(labels == 1)
    assert depth[cy, cx] < 6
    assert labels[other[1], other[0]] == 2 and depth[other[1], other[0]] == depth[labels == 2].max()


def test_anchor_of_a_rectangle_is_its_centre():
    labels = torch.ones(21, 31, dtype=torch.int64)
    assert guided._anchors(labels, 1) == [(15, 10)]


def test_anchors_of_a_large_map_use_a_scaled_down_distance_transform(monkeypatch):
    shapes = []
    distance = guided._distance_to_boundary
    monkeypatch.setattr(guided, "_distance_to_boundary", lambda labels: shapes.append(labels.shape) or distance(labels))
    labels = torch.ones(600, 300, dtype=torch.int64)
    labels[:, 150:] = 2
    anchors = guided._anchors(labels, 2)
    assert shapes == [(256, 128)]
    # The centres of the two halves, mapped back to full resolution (pixel centres, 600 / 256).
    assert anchors == [(73, 298), (223, 298)]
    for rank, (x, y) in enumerate(anchors, start=1):
        assert labels[y, x] == rank
    shapes.clear()
    guided._anchors(torch.ones(256, 100, dtype=torch.int64), 1)
    assert shapes == [(256, 100)]  # small enough: used as it is


def test_anchor_of_a_region_lost_in_scaling_falls_back_to_its_centroid():
    labels = torch.ones(512, 512, dtype=torch.int64)
    labels[0:2, 100] = 2  # a 1 px wide sliver: nearest-exact halving samples odd columns only
    labels[400, 400] = 3  # one pixel on an even row and column: never sampled
    anchors = guided._anchors(labels, 3)
    assert anchors[1] == (100, 0) and anchors[2] == (400, 400)
    assert labels[anchors[0][1], anchors[0][0]] == 1


# --------------------------------------------------------------------------- overlay


def _two_region_map(anchors, sketch=None) -> RegionMap:
    labels = torch.ones(60, 120, dtype=torch.int64)
    labels[:, 60:] = 2
    regions = [
        {
            "rank": rank,
            "channel": rank,
            "pixels": 3600,
            "bbox": [60 * (rank - 1), 0, 60 * rank - 1, 59],
            "anchor": list(anchor),
        }
        for rank, anchor in enumerate(anchors, start=1)
    ]
    return RegionMap(labels, regions, torch.ones(1, 60, 120) if sketch is None else sketch, (64, 128))


def _dark_box(image: Image.Image, x0: int, x1: int) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the near-black (number) pixels in columns x0..x1 - 1."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.int64))[:, x0:x1]
    ys, xs = (pixels.sum(-1) < 60).nonzero(as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()) + x0, int(ys.min()), int(xs.max()) + x0, int(ys.max())


@pytest.mark.parametrize("line_strength", [0.6, 0.25])
def test_overlay_tint_is_the_documented_blend(line_strength):
    sketch = torch.ones(1, 60, 120)
    sketch[0, :, 20] = 0.0  # a black line in region 1
    sketch[0, :, 90] = 0.5  # a gray line in region 2
    overlay = _two_region_map([(40, 50), (100, 50)], sketch).overlay(line_strength=line_strength)
    palette = region_palette(2)

    def expected(rank, s):
        faded = 1 - line_strength * (1 - s)
        return tuple(int(v) for v in (palette[rank - 1] * faded * 255).round().to(torch.uint8))

    assert overlay.getpixel((5, 5)) == expected(1, 1.0)  # paper: the region's tint
    assert overlay.getpixel((70, 5)) == expected(2, 1.0)
    assert overlay.getpixel((20, 5)) == expected(1, 0.0)
    assert overlay.getpixel((90, 5)) == expected(2, 0.5)
    assert overlay.getpixel((5, 5)) != overlay.getpixel((70, 5))


def _text_size(text: str) -> tuple[int, int]:
    """(width, height) of the overlay's number box for a 60 px high image (font size 10)."""
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=guided._font(10), stroke_width=1
    )
    return x1 - x0, y1 - y0


def _shifted(box, dx: int, dy: int):
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def test_overlay_numbers_are_centred_on_their_anchors_inside_the_image():
    overlay = _two_region_map([(30, 30), (90, 30)]).overlay()
    one, two = _dark_box(overlay, 0, 60), _dark_box(overlay, 60, 120)
    for box, (ax, ay) in ((one, (30, 30)), (two, (90, 30))):
        assert box is not None
        assert abs((box[0] + box[2]) / 2 - ax) <= 3 and abs((box[1] + box[3]) / 2 - ay) <= 3
    # Anchors in the corners: the number's box is moved inside the image (its edge on the image's
    # edge), not clipped: the same glyph pixels, shifted.
    corners = _two_region_map([(0, 0), (119, 59)]).overlay()
    (w1, h1), (w2, h2) = _text_size("1"), _text_size("2")
    assert _dark_box(corners, 0, 60) == _shifted(one, -(30 - w1 // 2), -(30 - h1 // 2))
    assert _dark_box(corners, 60, 120) == _shifted(two, (120 - w2) - (90 - w2 // 2), (60 - h2) - (30 - h2 // 2))


def test_overlay_leaves_out_a_number_overlapping_a_higher_priority_one():
    apart = _two_region_map([(58, 30), (100, 30)]).overlay()
    together = _two_region_map([(58, 30), (62, 30)]).overlay()  # region 2's number would overlap "1"
    assert _dark_box(together, 0, 120) == _dark_box(apart, 0, 80)  # only "1" is drawn
    assert _dark_box(apart, 80, 120) is not None


def test_region_map_of_a_channel_map_is_compact():
    channel_map = torch.full((10, 12), 4, dtype=torch.int64)
    channel_map[:, :3] = 1
    regions = region_map(channel_map, torch.ones(1, 10, 12), (16, 16))
    assert regions.channels == [1, 4]
    assert [r["pixels"] for r in regions.regions] == [30, 90]
    assert [r["bbox"] for r in regions.regions] == [[0, 0, 2, 9], [3, 0, 11, 9]]
    assert regions.labels[0].tolist() == [1] * 3 + [2] * 9
    assert F.one_hot(regions.labels).sum((0, 1)).tolist() == [0, 30, 90]


@pytest.mark.parametrize("vertical", [False, True])
def test_overlay_draws_numbers_whose_boxes_touch_and_drops_overlapping_ones(vertical):
    # Region 2's number box just left of (or just above) region 1's: touching is not overlapping.
    (w1, h1), (w2, h2) = _text_size("1"), _text_size("2")
    left1, top1 = 60 - w1 // 2, 30 - h1 // 2
    if vertical:
        touching = (left1 + w2 // 2, top1 - h2 + h2 // 2)
        overlapping = (touching[0], touching[1] + 1)
    else:
        touching = (left1 - w2 + w2 // 2, 30 - h1 // 2 + h2 // 2)
        overlapping = (touching[0] + 1, touching[1])
    alone = _dark_box(_two_region_map([(60, 30), (119, 59)]).overlay(), 0, 100)  # "1" only, "2" far away
    drawn = _two_region_map([(60, 30), touching]).overlay()
    dropped = _two_region_map([(60, 30), overlapping]).overlay()
    assert _dark_box(dropped, 0, 120) == alone
    assert _dark_box(drawn, 0, 120) != alone


def test_guided_from_checkpoint_names_the_wrong_model_kind(tmp_path):
    torch.manual_seed(0)
    model = SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=32))
    save_weights(tmp_path / "model.safetensors", model, describe("scft", model.config))
    with pytest.raises(ValueError, match=r"holds a 'scft' model, expected 'guide'$"):
        GuidedColorizer.from_checkpoint(tmp_path / "model.safetensors")


def test_read_colors_of_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "colors.json"
    path.write_bytes(b'["#ff0000", "\xff\xfe"]')
    with pytest.raises(ValueError, match=r"^colors file .*colors\.json is not UTF-8 text: "):
        guided.read_colors(path)

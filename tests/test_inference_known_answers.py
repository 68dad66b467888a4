"""Known answers for the colorizers' pre- and post-processing (issue 16 items 1, 2 and 5): models
whose output is known in closed form, real models compared with an independent computation, and
the issue's done-when cases (a transparent PIL sketch, 2 px lines at 1024 px, a 64x100 sketch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import refcolor
from refcolor.inference.guided import GuidedColorizer
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE_RGB = (200, 40, 90)


class MeanColourModel(SCFTColorizer):
    """An SCFTColorizer whose output is known: (sketch + mean colour of the reference) / 2, in the
    model's range [-1, 1]. Through Colorizer, in [0, 1]: out = (s + m) / 2 for a sketch pixel s and
    the reference's mean colour m, if and only if both inputs are mapped to [-1, 1] and the output
    back to [0, 1]."""

    def forward(self, sketch, reference):
        mean = reference.mean(dim=(2, 3), keepdim=True)
        return (sketch + mean) / 2


def _mean_colour_colorizer(**kwargs) -> refcolor.Colorizer:
    torch.manual_seed(0)
    return refcolor.Colorizer(MeanColourModel(SCFTColorizerConfig.preset("small", image_size=32)), **kwargs)


def _flat_reference(size=(70, 50)) -> Image.Image:
    return Image.new("RGB", size, REFERENCE_RGB)


def _boxes(width: int, height: int, scale: int = 1, stroke: int = 1) -> Image.Image:
    """Line art on white: a rectangle split by a vertical line, drawn on a grid of `scale` px cells
    with `stroke` px lines centred in each cell, so that the 1-scale drawing is exactly what
    darkest-pixel shrinking of the scaled one gives."""
    image = Image.new("L", (width * scale, height * scale), 255)
    draw = ImageDraw.Draw(image)
    offset = (scale - stroke) // 2

    def hline(y, x0, x1):
        draw.rectangle([x0 * scale, y * scale + offset, (x1 + 1) * scale - 1, y * scale + offset + stroke - 1], fill=0)

    def vline(x, y0, y1):
        draw.rectangle([x * scale + offset, y0 * scale, x * scale + offset + stroke - 1, (y1 + 1) * scale - 1], fill=0)

    top, bottom, left, right = height // 5, height - height // 5, width // 6, width - width // 6
    hline(top, left, right)
    hline(bottom, left, right)
    vline(left, top, bottom)
    vline(right, top, bottom)
    vline((left + right) // 2 + 1, top, bottom)
    return image


def _regions(prepared: np.ndarray) -> list[np.ndarray]:
    """Masks of the white areas of a line drawing (4-connected), each shrunk by one pixel off the lines."""
    from scipy import ndimage

    white = prepared > 0.5
    labels, count = ndimage.label(white)
    inner = ndimage.binary_erosion(white, structure=np.ones((3, 3)))
    return [(labels == i) & inner for i in range(1, count + 1)]


# --------------------------------------------------------------------------- known answers


def test_colorizer_maps_inputs_to_the_model_range_and_back():
    colorizer = _mean_colour_colorizer()
    sketch = _boxes(40, 32)  # at the working size already: no resampling
    out = np.asarray(colorizer(sketch, _flat_reference()), dtype=np.float64) / 255
    s = np.asarray(sketch, dtype=np.float64)[..., None] / 255
    m = np.array(REFERENCE_RGB) / 255
    expected = (s + m) / 2  # background (1 + m) / 2, lines m / 2
    assert out.shape == (32, 40, 3)
    assert np.abs(out - expected).max() <= 1 / 255 + 1e-9


def test_colorizer_tensor_path_gives_the_known_answer_unrounded():
    colorizer = _mean_colour_colorizer()
    sketch = torch.from_numpy(np.asarray(_boxes(40, 32), dtype=np.float32) / 255)[None, None]
    reference = torch.tensor(REFERENCE_RGB, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 20, 30) / 255
    out = colorizer(sketch, reference)
    expected = (sketch + reference[..., :1, :1]) / 2
    assert out.shape == (1, 3, 32, 40) and torch.allclose(out, expected.expand(1, 3, 32, 40), atol=1e-6)


def test_guided_colorize_matches_an_independent_computation():
    """GuidedColorizer.colorize against the model's two networks driven by hand: the region map
    (argmax of the segmentation), a hint image painted pixel by pixel in a loop, the colorization
    net, and the map from [-1, 1] to [0, 1]."""
    torch.manual_seed(0)
    model = GuidingPainter(GuidingPainterConfig.preset("small", image_size=32)).eval()
    painter = GuidedColorizer(model, snap=False)  # the model's own regions, not snapped to lines
    sketch = torch.from_numpy(np.asarray(_boxes(40, 32), dtype=np.float32) / 255)[None, None]
    colors = ["#d04030", [40, 90, 200]]
    out = painter.colorize(sketch, colors)

    with torch.no_grad():
        x = sketch * 2 - 1
        labels = model.segmentation(x).argmax(dim=1)[0]
        present = sorted(set(labels.flatten().tolist()))
        rgb = {present[0]: (208, 64, 48), present[1]: (40, 90, 200)}
        hints = torch.zeros(1, 4, 32, 40)
        for y in range(32):
            for x_ in range(40):
                channel = int(labels[y, x_])
                if channel in rgb:
                    hints[0, :3, y, x_] = torch.tensor(rgb[channel], dtype=torch.float32) / 127.5 - 1
                    hints[0, 3, y, x_] = 1
        segments = F.one_hot(labels, model.num_segments).permute(2, 0, 1)[None].float()
        expected = ((model.colorization(x, hints, segments) + 1) / 2).clamp(0, 1)
    assert len(present) >= 2
    assert out.shape == (1, 3, 32, 40) and torch.allclose(out, expected, atol=1e-5)


# --------------------------------------------------------------------------- done when


@pytest.fixture(scope="module")
def scft_model():
    torch.manual_seed(0)
    return SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=32)).eval()


def _transparent(image: Image.Image) -> Image.Image:
    """The same line art as RGBA: black opaque lines, fully transparent black elsewhere."""
    alpha = 255 - np.asarray(image)
    rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    return Image.fromarray(rgba, "RGBA")


def test_a_transparent_pil_sketch_colours_like_its_white_version(scft_model):
    colorizer = refcolor.Colorizer(scft_model)
    sketch = _boxes(50, 40)
    reference = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    expected = np.asarray(colorizer(sketch, reference))
    transparent = np.asarray(colorizer(_transparent(sketch), reference))
    assert np.array_equal(transparent, expected)
    assert expected.mean() > 30  # not the all-black sketch a plain convert("RGB") makes of it
    painter = GuidedColorizer(_guide_model())
    assert np.array_equal(
        np.asarray(painter.colorize(_transparent(sketch), ["#102030"])),
        np.asarray(painter.colorize(sketch, ["#102030"])),
    )


def _guide_model() -> GuidingPainter:
    torch.manual_seed(1)
    return GuidingPainter(GuidingPainterConfig.preset("small", image_size=32)).eval()


def test_two_pixel_lines_at_1024_colour_like_the_prepared_sketch(scft_model, monkeypatch):
    """A 1024 px drawing with 2 px strokes run at a 128 px working size (8x): the model gets the
    drawing's 1 px version exactly, and every region of the 1024 px output has the colour of the
    same region in the prepared sketch's output."""
    colorizer = refcolor.Colorizer(scft_model, size=128)
    prepared, full = _boxes(128, 128), _boxes(128, 128, scale=8, stroke=2)
    reference = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    seen = []
    forward = scft_model.forward
    monkeypatch.setattr(scft_model, "forward", lambda s, r: seen.append(s) or forward(s, r))
    small_out = np.asarray(colorizer(prepared, reference), dtype=np.float64) / 255
    big_out = np.asarray(colorizer(full, reference), dtype=np.float64) / 255
    assert torch.equal(seen[0], seen[1])  # the model saw the same sketch
    big_at_128 = big_out.reshape(128, 8, 128, 8, 3).mean(axis=(1, 3))
    regions = _regions(np.asarray(prepared) / 255)
    assert len(regions) == 3  # outside, left box, right box
    for mask in regions:
        assert (
            np.abs(big_at_128[mask].mean(axis=0) - small_out[mask].mean(axis=0)).max() < 1 / 255
        )  # 0.2/255 measured; area shrinking: 3.8/255


def test_a_64x100_sketch_is_padded_not_stretched(monkeypatch):
    torch.manual_seed(0)
    model = SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=64)).eval()
    colorizer = refcolor.Colorizer(model)
    sketch = _boxes(100, 64)
    reference = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = np.asarray(colorizer(sketch, reference), dtype=np.float64) / 255

    # The equivalent prepared input, by hand: white columns on both sides up to 104 = 13 * 8.
    s = torch.from_numpy(np.asarray(sketch, dtype=np.float32) / 255)[None, None]
    padded = torch.ones(1, 1, 64, 104)
    padded[..., 2:102] = s
    r = torch.from_numpy(np.asarray(reference, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        direct = ((model(padded * 2 - 1, r * 2 - 1) + 1) / 2).clamp(0, 1)[0, :, :, 2:102].permute(1, 2, 0).numpy()
    assert out.shape == (64, 100, 3)
    assert np.abs(out - direct).max() <= 1 / 255 + 1e-6
    for mask in _regions(np.asarray(sketch) / 255):
        assert np.abs(out[mask].mean(axis=0) - direct[mask].mean(axis=0)).max() < 1 / 255


class ColumnBands(torch.nn.Module):
    """A segmentation net whose region is the 8-pixel column band of each pixel (position only)."""

    def __init__(self, num_segments: int):
        super().__init__()
        self.num_segments = num_segments

    def forward(self, sketch):
        B, _, H, W = sketch.shape
        bands = (torch.arange(W) // 8).clamp(max=self.num_segments - 1).expand(B, H, W)
        return 10.0 * F.one_hot(bands, self.num_segments).permute(0, 3, 1, 2).float()


def test_guided_regions_of_a_padded_sketch_are_cropped_not_stretched():
    """64x100 at a 32 px working size: the model runs at 32x56 (50 columns plus 3 white ones each
    side); region channels at the sketch's size come from the cropped 50 columns, by hand here."""
    model = _guide_model()
    model.segmentation = ColumnBands(model.num_segments)
    painter = GuidedColorizer(model, snap=False)  # the model's own regions, not snapped to lines
    regions = painter.regions(_boxes(100, 64))
    assert regions.working_size == (32, 56)
    working_x = (torch.arange(100) + 0.5) * 50 / 100  # nearest-exact: the working column of each pixel
    expected_channels = (working_x.floor().long() + 3) // 8
    channel_of_label = torch.tensor([0] + regions.channels)
    assert torch.equal(channel_of_label[regions.labels[0]], expected_channels)
    assert torch.equal(channel_of_label[regions.labels], expected_channels.expand(64, 100))


def test_guided_model_input_is_the_sketch_padded_with_white(monkeypatch):
    painter = GuidedColorizer(_guide_model())
    seen = []
    regions = painter.model.regions
    monkeypatch.setattr(painter.model, "regions", lambda x: seen.append(x) or regions(x))
    sketch = _boxes(100, 64)
    painter.regions(sketch)
    x = seen[0]
    s = torch.from_numpy(np.asarray(sketch.resize((50, 32), Image.Resampling.BOX), dtype=np.float32) / 255)
    assert x.shape == (1, 1, 32, 56)
    assert torch.equal(x[0, 0, :, :3], torch.ones(32, 3)) and torch.equal(x[0, 0, :, 53:], torch.ones(32, 3))
    # Inside: the darkest-pixel shrink of the drawing, in [-1, 1] (lines -1, paper 1).
    assert set(x[0, 0, :, 3:53].unique().tolist()) == {-1.0, 1.0}
    assert bool(((x[0, 0, :, 3:53] < 0) >= (s < 1)).all())  # every 2x2 block holding a line is black


def test_as_many_colours_as_regions_is_fine():
    painter = GuidedColorizer(_guide_model())
    sketch = _boxes(40, 32)
    count = len(painter.regions(sketch))
    out = painter.colorize(sketch, ["#808080"] * count)
    assert out.size == (40, 32)
    with pytest.raises(ValueError, match=f"{count + 1} colours given but the sketch has only {count} regions"):
        painter.colorize(sketch, ["#808080"] * (count + 1))


def test_a_gray_reference_tensor_lends_its_gray():
    colorizer = _mean_colour_colorizer()
    sketch = torch.from_numpy(np.asarray(_boxes(40, 32), dtype=np.float32) / 255)[None, None]
    out = colorizer(sketch, torch.full((1, 1, 16, 16), 0.4))
    assert out.shape == (1, 3, 32, 40) and torch.allclose(out, ((sketch + 0.4) / 2).expand(1, 3, 32, 40), atol=1e-6)


def test_outputs_are_shrunk_back_without_aliasing():
    from refcolor.images import resize_output

    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]).remainder(2).float().expand(1, 3, 8, 8)
    assert torch.allclose(resize_output(checker, (4, 4)), torch.full((1, 3, 4, 4), 0.5), atol=0.02)  # nearest: 0 or 1
    assert resize_output(checker, (8, 8)) is checker

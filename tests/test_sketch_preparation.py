"""refcolor.data.sketch_preparation: the one sketch preparation of training, evaluation and
inference (issue 16 item 2): parity between the paths, colour images resized before they are
outlined, line art shrunk with its strokes kept dark and connected, aspect kept by padding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage

import refcolor
from refcolor.data.augmented_self_reference import AugmentedSelfReference
from refcolor.data.image_folder import ImageFolder, sample_images_dir
from refcolor.data.sketch import SketchExtractor, xdog
from refcolor.data.sketch_preparation import (
    crop,
    downsample_lines,
    pad_to_multiple,
    prepare_sketch,
    resize_colour,
    scaled_size,
)
from refcolor.models import SCFTColorizer, SCFTColorizerConfig
from refcolor.train.config import TrainConfig
from refcolor.train.tasks.guide import GuideTask

# The fixed parameters inference uses are xdog's defaults; a training extractor pinned to them
# draws the same sketches (training draws each parameter from a range around them).
XDOG_DEFAULTS = {"sigma": 0.5, "k": 2.5, "tau": 0.95, "epsilon": -0.005, "phi": 150.0}


def _line_art(size: int, width: int) -> torch.Tensor:
    """(1, 1, size, size): a circle, a diagonal and a horizontal line, `width` px black strokes."""
    s = size / 1024
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse([int(180 * s), int(180 * s), int(840 * s), int(840 * s)], outline=0, width=width)
    draw.line([(int(60 * s), int(950 * s)), (int(950 * s), int(60 * s))], fill=0, width=width)
    draw.line([(int(60 * s), int(500 * s)), (int(960 * s), int(500 * s))], fill=0, width=width)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None, None]


def _dark_components(sketch: torch.Tensor) -> int:
    return ndimage.label(sketch[0, 0].numpy() < 0.5, structure=np.ones((3, 3)))[1]


def test_a_two_pixel_line_stays_black_and_connected_at_eight_times_reduction():
    full = _line_art(1024, 2)
    path = F.max_pool2d(1 - full, 8)[0, 0] > 0.5  # the 128 px pixels the strokes pass through
    assert _dark_components(full) == 1  # the three strokes cross: one drawing
    small = downsample_lines(full, (128, 128))
    assert float(small[0, 0][path].max()) == 0.0  # every pixel on the strokes' path is black
    assert _dark_components(small) == 1  # connected as drawn
    assert float(small[0, 0][~path].min()) == 1.0  # and nothing else darkened
    # Area averaging, the previous method: the same strokes at 0.5625..0.875, gone below 0.5.
    area = F.interpolate(full, size=(128, 128), mode="area")
    assert float(area[0, 0][path].min()) >= 0.5 and _dark_components(area) == 0


def test_line_strokes_are_as_dark_as_training_strokes():
    """XDoG strokes of a colour disc at the working size (what training shows the model) are dark
    (< 0.1 on average over the stroke); prepared line art matches that, area-shrunk art does not."""
    disc = Image.new("RGB", (128, 128), (255, 255, 255))
    ImageDraw.Draw(disc).ellipse([22, 22, 105, 105], fill=(200, 60, 60))
    colour = torch.from_numpy(np.asarray(disc, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    training = prepare_sketch(colour, extract="always", extractor=SketchExtractor(**XDOG_DEFAULTS))
    stroke = training[0, 0] < 0.9
    assert float(training[0, 0][stroke].mean()) < 0.1 and _dark_components(training) == 1
    prepared = prepare_sketch(_line_art(1024, 2), (128, 128))  # gray: kept as line art
    assert float(prepared[0, 0][prepared[0, 0] < 0.9].mean()) < 0.1


def test_colour_images_are_resized_before_they_are_outlined():
    """A 512 px colour picture prepared at 64 px: its outline drawn at 64 px is as dark as XDoG
    strokes get; outlining at full size and shrinking (the old GuidedColorizer) fades it."""
    image = Image.new("RGB", (512, 512), (255, 255, 255))
    ImageDraw.Draw(image).ellipse([100, 100, 400, 400], fill=(40, 90, 200))
    colour = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    prepared = prepare_sketch(colour, (64, 64))
    expected = xdog(resize_colour(colour, (64, 64)))
    assert torch.equal(prepared, expected)
    outlined_then_shrunk = F.interpolate(xdog(colour), size=(64, 64), mode="area")
    assert float(prepared.min()) < 0.05 and float(outlined_then_shrunk.min()) > 0.4


def test_resize_colour_is_the_training_resampling():
    path = sorted(sample_images_dir().glob("*.png"))[0]  # a 128 px bundled training image
    training = ImageFolder(path.parent, size=32)
    index = training.paths.index(str(path))
    inference = resize_colour(refcolor.images.to_tensor(path), (32, 32))
    assert torch.equal(inference[0], training[index]["image"])


def test_training_paths_call_the_shared_preparation():
    """GuideTask and AugmentedSelfReference draw exactly what prepare_sketch draws with the same
    extractor and generator state."""
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    extractor = SketchExtractor()
    expected = prepare_sketch(images, extract="always", extractor=extractor, generator=torch.Generator().manual_seed(5))
    task = GuideTask.__new__(GuideTask)
    task.sketcher = extractor
    data = task.prepare(images, torch.Generator().manual_seed(5))
    assert torch.equal(data["sketch"], expected * 2 - 1)
    triple = AugmentedSelfReference(sketch=extractor)(images, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    torch.rand(2, 4, generator=generator, dtype=torch.float64)  # the colour-jitter draw that comes first
    assert triple["sketch"].shape == (2, 1, 24, 24)
    assert torch.equal(
        triple["sketch"], prepare_sketch(triple["target"], extract="always", extractor=extractor, generator=generator)
    )


def test_inference_sees_the_training_sketch_of_the_same_file(tmp_path, monkeypatch):
    """End to end: a bundled 128 px training image given to Colorizer (model size 32) reaches the
    model as exactly the sketch training makes of it (ImageFolder at 32 px, then the extractor at
    the inference parameters)."""
    folder = tmp_path / "data"
    folder.mkdir()
    source = sorted(sample_images_dir().glob("*.png"))[3]
    shutil.copy(source, folder / source.name)
    training_image = ImageFolder(folder, size=32)[0]["image"][None]
    training_sketch = GuideTask.prepare(
        _task_with(SketchExtractor(**XDOG_DEFAULTS)), training_image, torch.Generator()
    )["sketch"]

    torch.manual_seed(0)
    colorizer = refcolor.Colorizer(SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=32)))
    seen = []
    forward = colorizer.model.forward
    monkeypatch.setattr(colorizer.model, "forward", lambda s, r: seen.append(s) or forward(s, r))
    colorizer(folder / source.name, folder / source.name)
    assert torch.allclose(seen[0], training_sketch, atol=1e-6)


def _task_with(extractor: SketchExtractor) -> GuideTask:
    task = GuideTask.__new__(GuideTask)
    task.sketcher = extractor
    task.config = TrainConfig(model="guide")
    return task


def test_scaled_size_pad_and_crop():
    assert scaled_size(100, 64, 64) == (100, 64) and scaled_size(1024, 1600, 64) == (64, 100)
    assert scaled_size(3, 3000, 32) == (32, 32000)
    with pytest.raises(ValueError, match="at least 1x1"):
        scaled_size(0, 5, 32)
    image = torch.rand(2, 1, 30, 21)
    padded, box = pad_to_multiple(image, 8, 1.0)
    assert padded.shape == (2, 1, 32, 24) and box == (1, 1, 30, 21)
    assert torch.equal(crop(padded, box), image)
    assert float(padded[..., 0, :].min()) == 1.0 and float(padded[..., :, -2:].min()) == 1.0
    same, box = pad_to_multiple(torch.rand(1, 3, 16, 8), 8, 1.0)
    assert same.shape == (1, 3, 16, 8) and box == (0, 0, 16, 8)


def test_paper_is_brought_to_white_and_enlarging_keeps_the_range():
    scan = torch.full((1, 1, 40, 40), 0.9)
    scan[..., 20, :] = 0.3
    prepared = prepare_sketch(scan, (10, 10))
    assert torch.allclose(prepared[..., 0, :], torch.ones(1, 1, 10)) and float(prepared.min()) == pytest.approx(1 / 3)
    big = prepare_sketch(scan, (80, 80))
    assert big.shape == (1, 1, 80, 80) and 0 <= float(big.min()) and float(big.max()) <= 1
    with pytest.raises(ValueError, match="argument 'extract' must be one of"):
        prepare_sketch(scan, extract="sometimes")


def test_resize_colour_keeps_orientation_and_matches_pil():
    ramp = torch.linspace(0, 1, 60).expand(1, 3, 40, 60).contiguous()  # brighter to the right
    out = resize_colour(ramp, (20, 30))
    assert out.shape == (1, 3, 20, 30)
    pil = Image.fromarray((ramp[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    expected = np.asarray(pil.resize((30, 20), Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.float32) / 255
    assert torch.equal(out[0], torch.from_numpy(expected).permute(2, 0, 1))
    assert bool((out[0, 0, 10, 1:] >= out[0, 0, 10, :-1]).all())  # still a left-to-right ramp


def test_always_outlines_with_the_given_extractor_and_generator():
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    extractor = SketchExtractor(sigma=(0.4, 0.7), phi=(50.0, 300.0))
    direct = extractor(images, torch.Generator().manual_seed(11))  # training's extractor, called by hand
    prepared = prepare_sketch(
        images, extract="always", extractor=extractor, generator=torch.Generator().manual_seed(11)
    )
    assert torch.equal(prepared, direct)
    assert not torch.equal(prepared, xdog(images))  # the random style, not the fixed inference one

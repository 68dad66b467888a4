"""Full-resolution output (refcolor.inference.full_resolution, keep_lines): outputs of the sketch's
own size whose lines are the sketch's own, crisp at 4x upsampling, and the model's colours left
exactly as upsampled away from the lines."""

from __future__ import annotations

import pytest
import torch

from refcolor import images as im
from refcolor.cli import main
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.inference.colorizer import Colorizer
from refcolor.inference.full_resolution import LINE_GROWTH, fill_lines, lay_lines, line_mask
from refcolor.inference.guided import GuidedColorizer
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")

WORKING = 128  # the stub models' training size: a 512 px sketch is upsampled 4x


class PaintsOverItsSketch(SCFTColorizer):
    """An 'oracle' SCFT model with a known output: a smooth colour field (varying with position,
    so that resampling is visible) multiplied by its input sketch, i.e. it paints the working
    resolution lines as a trained model does."""

    def forward(self, sketch, reference, **kwargs):
        B, _, H, W = sketch.shape
        ys = torch.linspace(0.2, 0.9, H).view(1, 1, H, 1).expand(B, 1, H, W)
        xs = torch.linspace(0.9, 0.3, W).view(1, 1, 1, W).expand(B, 1, H, W)
        field = torch.cat([ys, xs, torch.full_like(ys, 0.6)], dim=1)
        return im.to_model_range(field * im.from_model_range(sketch))


def _oracle(**kwargs) -> Colorizer:
    model = PaintsOverItsSketch(SCFTColorizerConfig.preset("small", image_size=WORKING))
    return Colorizer(model, **kwargs)


def _line_sketch(size: int = 512, column: int = 255) -> torch.Tensor:
    sketch = torch.ones(1, 1, size, size)
    sketch[..., column] = 0.0  # a 1 px black vertical line
    return sketch


def test_a_one_pixel_line_stays_black_and_crisp_at_4x():
    sketch, reference = _line_sketch(), torch.rand(1, 3, 64, 64)
    kept = _oracle()(sketch, reference)[0]
    plain = _oracle(keep_lines=False)(sketch, reference)[0]
    assert kept.shape == plain.shape == (3, 512, 512)
    row = slice(100, 400)
    assert float(kept[:, row, 255].max()) <= 0.1  # the line, black in every channel and row
    # Crisp: the pixels beside it are the painted colour, not a gray band.
    darkest_beside = kept[:, row][:, :, [253, 254, 256, 257]].amax(dim=0).min()
    assert float(darkest_beside) > 0.5
    # Without keep_lines the upsampled working-resolution line is a gray band several pixels wide
    # (measured: 6 columns below 0.5, centred between columns 253 and 254), not black at column 255.
    assert int((plain[:, 250].amax(dim=0) < 0.5).sum()) >= 3
    assert float(plain[:, row, 255].amax(dim=0).max()) > 0.1
    assert int((kept[:, 250].amax(dim=0) < 0.5).sum()) == 1


def test_far_from_lines_the_output_is_the_upsampled_working_output():
    sketch, reference = _line_sketch(), torch.rand(1, 3, 64, 64)
    kept = _oracle()(sketch, reference)[0]
    plain = _oracle(keep_lines=False)(sketch, reference)[0]
    # Line-filled pixels reach LINE_GROWTH + 1 working px from the line, bicubic 2 more; 4 px each.
    margin = (LINE_GROWTH + 1 + 2) * 4 + 1
    far = torch.ones(512, dtype=torch.bool)
    far[255 - margin : 255 + margin + 1] = False
    assert torch.equal(kept[:, :, far], plain[:, :, far])
    assert not torch.equal(kept, plain)


@pytest.mark.parametrize("keep_lines", [True, False])
@pytest.mark.parametrize("size", [(37, 53), (101, 67)])
def test_the_output_has_the_sketch_size_for_odd_sizes(size, keep_lines):
    torch.manual_seed(0)
    colorizer = Colorizer(SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=32)), keep_lines=keep_lines)
    gray = torch.ones(1, 1, *size)
    gray[..., size[0] // 2, :] = 0
    out = colorizer(gray, torch.rand(3, 40, 30))
    assert out.shape == (1, 3, *size) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert colorizer(im.tensor_to_pil(torch.rand(3, *size)), torch.rand(3, 40, 30)).size == (size[1], size[0])
    torch.manual_seed(0)
    model = GuidingPainter(GuidingPainterConfig.preset("small", image_size=32))
    painter = GuidedColorizer(model, keep_lines=keep_lines)
    painted = painter.colorize(gray, ["#d04030"])
    assert painted.shape == (1, 3, *size)
    if keep_lines:  # the line of the sketch, black at the sketch's own size
        assert float(painted[0, :, size[0] // 2].max()) <= 0.1


def test_a_colour_sketch_gets_its_full_resolution_outline():
    colour = torch.ones(1, 3, 256, 256)
    colour[:, 1:, 64:192, 64:192] = 0.1  # a red square on white
    out = _oracle()(colour, torch.rand(1, 3, 64, 64))
    outline = prepare_sketch(colour, extract="auto")  # the outline at 256 px, the training extractor
    assert outline.shape == (1, 1, 256, 256) and float(outline.min()) < 0.1
    assert bool((out <= outline + 1e-6).all())  # laid over by multiplying
    assert float(out[:, :, outline[0, 0] < 0.1].max()) <= 0.1


def test_fill_lines_meets_in_the_middle_and_keeps_the_rest():
    colours = torch.zeros(1, 3, 8, 12)
    colours[:, 0, :, :6] = 1  # red left half
    colours[:, 2, :, 6:] = 1  # blue right half
    mask = torch.zeros(1, 1, 8, 12, dtype=torch.bool)
    mask[..., 4:8] = True  # a 4 px line over the border, painted black by the model
    painted = colours.masked_fill(mask, 0.0)
    filled = fill_lines(painted, mask)
    assert torch.equal(filled[..., :4], colours[..., :4]) and torch.equal(filled[..., 8:], colours[..., 8:])
    assert torch.allclose(filled[..., 4:6], colours[..., 4:6]) and torch.allclose(filled[..., 6:8], colours[..., 6:8])
    everything = torch.ones(1, 1, 8, 12, dtype=torch.bool)
    assert torch.equal(fill_lines(painted, everything), painted)  # nothing to fill from


def test_line_mask_and_argument_errors():
    sketch = torch.ones(1, 1, 9, 9)
    sketch[..., 4, 4] = 0.0
    assert int(line_mask(sketch).sum()) == (2 * LINE_GROWTH + 1) ** 2
    assert int(line_mask(sketch, grow=0).sum()) == 1
    with pytest.raises(ValueError, match="argument 'working_sketch'"):
        lay_lines(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 9), torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="argument 'lines'"):
        lay_lines(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 3, 16, 16))


def test_cli_no_keep_lines(tmp_path, capsys):
    torch.manual_seed(0)
    config = SCFTColorizerConfig.preset("small", image_size=32)
    weights = tmp_path / "model.safetensors"
    save_weights(weights, SCFTColorizer(config), describe("scft", config))
    im.tensor_to_pil(_line_sketch(96, 40)[0]).save(tmp_path / "sketch.png")
    im.tensor_to_pil(torch.rand(3, 40, 40)).save(tmp_path / "reference.png")
    common = [str(tmp_path / "sketch.png"), "--reference", str(tmp_path / "reference.png")]
    common += ["--checkpoint", str(weights)]
    assert main(["colorize", *common, "-o", str(tmp_path / "kept.png")]) == 0
    assert main(["colorize", *common, "-o", str(tmp_path / "plain.png"), "--no-keep-lines"]) == 0
    kept, plain = (im.to_tensor(tmp_path / f"{name}.png")[0] for name in ("kept", "plain"))
    assert kept.shape == plain.shape == (3, 96, 96)
    assert float(kept[:, :, 40].max()) <= 0.1 and not torch.equal(kept, plain)

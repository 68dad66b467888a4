"""refcolor.Colorizer and `refcolor colorize`: loading, any-size inputs, outline extraction, folders
and one-line errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import refcolor
from refcolor import images as im
from refcolor.cli import main
from refcolor.data.sketch_preparation import is_line_drawing, prepare_sketch, scaled_size
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.loading import load_model
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from refcolor.train.checkpoint import CheckpointManager


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    config = SCFTColorizerConfig.preset("small", image_size=32)
    path = tmp_path_factory.mktemp("scft") / "model.safetensors"
    save_weights(path, SCFTColorizer(config), describe("scft", config))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 45, 70, generator=g)
    im.tensor_to_pil(colour).save(root / "colour.png")
    lines = torch.ones(1, 37, 29)
    lines[:, 10:12, :] = 0
    im.tensor_to_pil(lines).save(root / "lines.png")
    im.tensor_to_pil(torch.rand(3, 50, 33, generator=g)).save(root / "reference.jpg")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_any_size_sketch_gives_an_image_of_its_size(weights, images):
    colorizer = refcolor.Colorizer.from_checkpoint(weights)
    for name, size in (("colour.png", (70, 45)), ("lines.png", (29, 37))):
        out = colorizer(images / name, images / "reference.jpg")
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == size
    batch = torch.rand(2, 1, 24, 40)
    out = colorizer(batch, torch.rand(3, 50, 33))
    assert out.shape == (2, 3, 24, 40) and 0 <= out.min() and out.max() <= 1


def test_colour_sketches_are_outlined_and_line_art_is_kept():
    colour = torch.zeros(1, 3, 32, 32)
    colour[0, 0, 8:24, 8:24] = 1  # a red square on black
    assert is_line_drawing(colour).tolist() == [False]
    sketch = prepare_sketch(colour)
    assert sketch.shape == (1, 1, 32, 32) and sketch[0, 0, 16, 16] > 0.9 and sketch.min() < 0.5  # white inside, a line
    gray = torch.full((1, 3, 16, 16), 0.8)
    gray[..., 4, :] = 0.2
    assert is_line_drawing(gray).tolist() == [True]
    expected = torch.ones(1, 1, 16, 16)
    expected[..., 4, :] = 0.25  # the paper (median 0.8) brought to white, the line scaled alike
    assert torch.allclose(prepare_sketch(gray), expected, atol=1e-6)
    assert scaled_size(45, 70, 32) == (32, 50) and scaled_size(3, 3, 32) == (32, 32)


def test_runs_the_model_at_the_training_size_with_the_aspect_kept(weights, monkeypatch):
    colorizer = refcolor.Colorizer.from_checkpoint(weights)
    seen = []
    forward = colorizer.model.forward
    monkeypatch.setattr(colorizer.model, "forward", lambda s, r: seen.append((s, r.shape)) or forward(s, r))
    colorizer(torch.rand(1, 90, 60), torch.rand(3, 64, 128))
    ((sketch, reference_shape),) = seen
    # 90x60 -> 48x32 exactly (no rounding of the aspect), already a multiple of 8: no padding.
    assert sketch.shape == (1, 1, 48, 32) and reference_shape == (1, 3, 32, 64)
    seen.clear()
    colorizer(torch.rand(1, 64, 100), torch.rand(3, 32, 32))
    # 64x100 -> 32x50, padded with white (1 in the model range) to 32x56, 3 columns each side.
    sketch = seen[0][0]
    assert sketch.shape == (1, 1, 32, 56)
    assert torch.equal(sketch[..., :3], torch.ones(1, 1, 32, 3)) and torch.equal(
        sketch[..., -3:], torch.ones(1, 1, 32, 3)
    )


def test_loads_from_run_dir_checkpoint_and_weights(weights, tmp_path):
    model = load_model(weights).model
    manager = CheckpointManager(tmp_path / "run")
    config = {"model": "scft", "model_config": model.config.to_dict()}
    path = manager.save(5, {"generator": model}, {}, config=config)
    for source in (tmp_path / "run", path, weights):
        loaded = refcolor.Colorizer.from_checkpoint(source).model
        assert all(
            torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
        )


def test_a_guide_model_is_refused(tmp_path):
    config = GuidingPainterConfig.preset("small", image_size=32)
    path = tmp_path / "guide.safetensors"
    save_weights(path, GuidingPainter(config), describe("guide", config))
    with pytest.raises(ValueError, match="holds a 'guide' model, expected 'scft'"):
        refcolor.Colorizer.from_checkpoint(path)


def test_cli_file_and_folder(weights, images, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "colorize",
                str(images / "colour.png"),
                "-r",
                str(images / "reference.jpg"),
                "-c",
                str(weights),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (70, 45)
    folder = tmp_path / "folder"
    assert (
        main(["colorize", str(images), "-r", str(images / "reference.jpg"), "-c", str(weights), "-o", str(folder)]) == 0
    )
    captured = capsys.readouterr()
    assert "wrote 3 images" in captured.out and "skipped 1 unreadable" in captured.out
    assert sorted(p.name for p in folder.iterdir()) == ["colour.png", "lines.png", "reference.png"]
    assert "broken.png" in captured.err


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing_sketch", "sketch not found"),
        ("missing_reference", "image not found"),
        ("missing_checkpoint", "checkpoint not found"),
        ("corrupt_checkpoint", "not a valid safetensors"),
        ("corrupt_pt", "corrupt or not a refcolor checkpoint"),
        ("unreadable_sketch", "cannot read image"),
        ("empty_run_dir", "no model.safetensors"),
    ],
)
def test_cli_errors_are_one_line(case, match, weights, images, tmp_path, capsys):
    sketch, reference, checkpoint = images / "colour.png", images / "reference.jpg", weights
    if case == "missing_sketch":
        sketch = tmp_path / "nope.png"
    elif case == "missing_reference":
        reference = tmp_path / "nope.jpg"
    elif case == "missing_checkpoint":
        checkpoint = tmp_path / "nope"
    elif case == "corrupt_checkpoint":
        checkpoint = tmp_path / "bad.safetensors"
        checkpoint.write_bytes(weights.read_bytes()[:200])
    elif case == "corrupt_pt":
        checkpoint = tmp_path / "bad.pt"
        checkpoint.write_bytes(b"PK\x03\x04 garbage")
    elif case == "unreadable_sketch":
        sketch = images / "broken.png"
    elif case == "empty_run_dir":
        checkpoint = tmp_path / "run"
        checkpoint.mkdir()
    code = main(["colorize", str(sketch), "-r", str(reference), "-c", str(checkpoint), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("refcolor colorize: error:") and match in err, err


def test_a_reference_batch_of_the_wrong_size_is_a_clear_error(weights):
    colorizer = refcolor.Colorizer.from_checkpoint(weights)
    with pytest.raises(ValueError, match=r"argument 'reference' must hold 1 image or one per sketch \(3\), got 2"):
        colorizer(torch.rand(3, 1, 16, 16), torch.rand(2, 3, 16, 16))

"""refcolor.ExemplarColorizer and `refcolor colorize --model exemplar`: loading (weights, checkpoint,
the bundled model or its clear absence), any size, gray / colour / RGBA inputs, the input's
full-resolution luminance kept, folders, and one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import refcolor
from refcolor import images as im
from refcolor.cli import main
from refcolor.lab import rgb_to_lab
from refcolor.models import ExemplarColorizer, ExemplarColorizerConfig
from refcolor.models.bundled import PRETRAINED_DIR_ENV
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights

CONFIG = ExemplarColorizerConfig(image_size=32, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("exemplar") / "model.safetensors"
    save_weights(path, ExemplarColorizer(CONFIG), describe("exemplar", CONFIG))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    im.tensor_to_pil(torch.rand(3, 45, 71, generator=g)).save(root / "colour.png")
    im.tensor_to_pil(torch.rand(1, 37, 29, generator=g)).save(root / "gray.png")
    rgba = (torch.rand(4, 33, 50, generator=g) * 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    im.tensor_to_pil(torch.rand(3, 50, 33, generator=g)).save(root / "exemplar.jpg")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_paths_of_any_size_and_mode_give_a_pil_image_of_their_size(weights, images):
    colorizer = refcolor.ExemplarColorizer.from_checkpoint(weights)
    for name in ("colour.png", "gray.png", "rgba.png"):
        out = colorizer(images / name, images / "exemplar.jpg")
        assert isinstance(out, Image.Image) and out.mode == "RGB"
        assert out.size == Image.open(images / name).size
    out = colorizer(Image.open(images / "gray.png"), Image.open(images / "rgba.png"))  # PIL in, gray and RGBA
    assert out.size == (29, 37)


def test_tensors_give_a_batch_in_unit_range(weights):
    colorizer = refcolor.ExemplarColorizer.from_checkpoint(weights)
    out = colorizer(torch.rand(2, 1, 24, 41), torch.rand(3, 50, 33))
    assert out.shape == (2, 3, 24, 41) and 0 <= out.min() and out.max() <= 1
    out = colorizer(torch.rand(2, 3, 20, 20), torch.rand(2, 4, 30, 30))  # one exemplar per image, RGBA
    assert out.shape == (2, 3, 20, 20)
    out = colorizer(np.random.default_rng(0).integers(0, 256, (19, 23, 3), dtype=np.uint8), torch.rand(3, 8, 8))
    assert isinstance(out, Image.Image) and out.size == (23, 19)


def test_the_output_keeps_the_inputs_full_resolution_luminance(weights):
    colorizer = refcolor.ExemplarColorizer.from_checkpoint(weights)
    # Fine stripes at 4x the working size would be lost by a resize round trip.
    x = torch.arange(160).float()
    gray = (0.3 + 0.4 * (x % 2)).view(1, 1, 1, 160).expand(1, 1, 128, 160).contiguous()
    out = colorizer(gray, torch.rand(3, 32, 32))
    L_in = rgb_to_lab(gray.expand(-1, 3, -1, -1))[:, 0]
    L_out = rgb_to_lab(out)[:, 0]
    # Equal up to the sRGB clipping of colours outside the gamut (a few L* units at most, on few pixels).
    assert (L_out - L_in).abs().median() < 0.5 and (L_out - L_in).abs().mean() < 2.0


def test_working_size_and_device_options(weights):
    colorizer = refcolor.ExemplarColorizer.from_checkpoint(weights, size=16)
    assert colorizer.size == 16 and colorizer(torch.rand(1, 3, 40, 30), torch.rand(3, 9, 9)).shape == (1, 3, 40, 30)
    with pytest.raises(ValueError, match="ExemplarColorizer: argument 'size' must be an int >= 8 or None, got 4"):
        refcolor.ExemplarColorizer.from_checkpoint(weights, size=4)


def test_pretrained_is_a_clear_error_without_bundled_weights_and_loads_them_when_present(
    weights, monkeypatch, tmp_path
):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no bundled 'exemplar' model: .*exemplar.safetensors is missing"):
        refcolor.ExemplarColorizer.pretrained()
    shutil.copy(weights, tmp_path / "exemplar.safetensors")
    assert refcolor.ExemplarColorizer.pretrained().model.config == CONFIG


def test_bad_inputs_are_one_line_errors(weights, images):
    colorizer = refcolor.ExemplarColorizer.from_checkpoint(weights)
    with pytest.raises(ValueError, match=r"argument 'exemplar' must hold 1 image or one per image \(2\), got 3"):
        colorizer(torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match=r"argument 'image' must hold values in \[0, 1\], got \[0, 255\]"):
        colorizer(torch.arange(256.0).view(1, 1, 16, 16).expand(1, 3, 16, 16), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="argument 'exemplar' must be a tensor"):
        colorizer(torch.rand(3, 8, 8), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="cannot read image"):
        colorizer(images / "broken.png", images / "exemplar.jpg")
    with pytest.raises(TypeError, match="argument 'model' must be a refcolor.models.ExemplarColorizer, got Linear"):
        refcolor.ExemplarColorizer(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="holds a 'exemplar' model, expected 'scft'"):
        refcolor.Colorizer.from_checkpoint(weights)


def test_cli_colours_a_file_and_a_folder(weights, images, tmp_path, capsys):
    out = tmp_path / "out.png"
    args = ["colorize", "--model", "exemplar", str(images / "rgba.png"), "--reference", str(images / "exemplar.jpg")]
    assert main([*args, "--checkpoint", str(weights), "-o", str(out)]) == 0
    assert Image.open(out).size == (50, 33)
    folder = tmp_path / "folder"
    args = ["colorize", "--model", "exemplar", str(images), "--reference", str(images / "exemplar.jpg")]
    assert main([*args, "--checkpoint", str(weights), "-o", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["colour.png", "exemplar.png", "gray.png", "rgba.png"]
    assert "skipped 1 unreadable" in capsys.readouterr().out


def test_cli_errors_are_one_line(weights, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    args = ["colorize", "--model", "exemplar", str(images / "gray.png"), "--reference", str(images / "exemplar.jpg")]
    assert main([*args, "-o", str(tmp_path / "o.png")]) != 0
    err = capsys.readouterr().err.strip()
    assert "no bundled 'exemplar' model" in err and len(err.splitlines()) == 1
    assert main(["colorize", str(images / "gray.png"), "--reference", str(images / "exemplar.jpg"), "-o", "x.png"]) != 0
    assert "no bundled 'scft' model" in capsys.readouterr().err  # the scft default is the bundled model too
    missing = [
        "colorize",
        "--model",
        "exemplar",
        str(tmp_path / "nope.png"),
        "--reference",
        str(images / "exemplar.jpg"),
    ]
    assert main([*missing, "--checkpoint", str(weights), "-o", "x.png"]) != 0
    assert "image not found" in capsys.readouterr().err

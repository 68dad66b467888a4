"""The one image-input path (refcolor.images.to_tensor): paths, PIL images, tensors and
numpy arrays give the same pixels; transparency on white; gray / palette / 16-bit / EXIF; checked
tensor and array ranges and layouts with one-line errors; one folder listing everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.data.image_folder import ImageFolder, list_images
from refcolor.data.sketch import SketchExtractor, sketch_files
from refcolor.images import image_files, to_tensor


def _rgba() -> Image.Image:
    """Black line art on a fully transparent background whose hidden colour is black (as many
    drawing programs export it): the picture `convert("RGB")` turns all black."""
    pixels = np.zeros((12, 10, 4), dtype=np.uint8)
    pixels[5, :, 3] = 255  # an opaque black line on row 5
    pixels[8, :, :] = (255, 0, 0, 128)  # a half-transparent red line on row 8
    return Image.fromarray(pixels, "RGBA")


def test_transparency_is_composited_on_white_for_every_input_form(tmp_path):
    image = _rgba()
    path = tmp_path / "lines.png"
    image.save(path)
    expected = torch.ones(1, 3, 12, 10)
    expected[:, :, 5] = 0
    expected[0, :, 8] = torch.tensor([255, 127, 127]).view(3, 1) / 255  # red at alpha 128/255 on white
    array = np.asarray(image)
    forms = {
        "path": path,
        "pil": image,
        "array uint8": array,
        "array float": array.astype(np.float32) / 255,
        "tensor uint8": torch.from_numpy(array.copy()).permute(2, 0, 1),
        "tensor float": torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255,
    }
    for form, value in forms.items():
        got = to_tensor(value, "sketch")
        assert got.shape == (1, 3, 12, 10) and got.dtype == torch.float32, form
        # Decoded files and PIL images go through PIL's 8-bit compositing; arrays and tensors are exact.
        assert torch.allclose(got, expected, atol=1 / 255 if form in ("path", "pil") else 1e-6), form


def test_gray_palette_sixteen_bit_and_exif():
    gray = Image.fromarray(np.array([[0, 128], [255, 64]], dtype=np.uint8), "L")
    assert torch.allclose(to_tensor(gray), torch.tensor([[0, 128], [255, 64]]).float().div(255).expand(1, 3, 2, 2))
    palette = gray.convert("P")
    assert torch.equal(to_tensor(palette), to_tensor(gray))
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))  # 16-bit gray: rescaled, not clipped
    assert to_tensor(wide)[0, :, 0, 1].tolist() == [1.0, 1.0, 1.0]
    assert torch.allclose(to_tensor(np.array([[0, 65535]], dtype=np.uint16)), torch.tensor([[[[0.0, 1.0]]]]))
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 3x2 stored image shows as 2x3.
    stored = Image.new("RGB", (3, 2), (255, 255, 255))
    stored.putpixel((0, 0), (0, 0, 0))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.info["exif"] = exif.tobytes()
    upright = to_tensor(Image.open(_roundtrip(stored, exif)))
    assert upright.shape == (1, 3, 3, 2) and float(upright[0, 0, 0, 1]) == 0.0  # top-left moved to top-right


def _roundtrip(image: Image.Image, exif) -> object:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    buffer.seek(0)
    return buffer


def test_batches_and_channel_counts():
    assert to_tensor(torch.rand(2, 1, 5, 6)).shape == (2, 1, 5, 6)
    assert to_tensor(np.random.default_rng(0).random((2, 5, 6, 3))).shape == (2, 3, 5, 6)
    assert to_tensor(np.zeros((5, 6), dtype=np.uint8)).shape == (1, 1, 5, 6)
    rgba = torch.zeros(1, 4, 3, 3)  # fully transparent black: white
    assert torch.equal(to_tensor(rgba), torch.ones(1, 3, 3, 3))
    slightly_off = torch.full((1, 3, 3), 1.0005)  # rounding overshoot within the tolerance: clamped
    assert float(to_tensor(slightly_off).max()) == 1.0
    assert float(to_tensor(-slightly_off + 1).min()) == 0.0  # and undershoot
    assert torch.equal(
        to_tensor(torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)), torch.tensor([[[[0.0, 0.2, 1.0]]]])
    )


def test_the_0_255_hint_only_for_values_that_look_like_0_255():
    with pytest.raises(ValueError, match=r"got \[0, 1.5\]$"):
        to_tensor(torch.tensor([[[0.0, 1.5]]]))
    with pytest.raises(ValueError, match=r"got \[-0.5, 0.5\]$"):
        to_tensor(torch.tensor([[[-0.5, 0.5]]]))
    with pytest.raises(ValueError, match=r"got \[0, 300\]$"):
        to_tensor(torch.tensor([[[0.0, 300.0]]]))
    with pytest.raises(ValueError, match=r"got \[0, 255\] \(0..255 values"):
        to_tensor(torch.tensor([[[0.0, 255.0]]]))


@pytest.mark.parametrize(
    "value, words",
    [
        (
            torch.rand(3, 4, 4) * 255,
            r"Colorizer: argument 'sketch' must hold values in \[0, 1\], got \[.*\] "
            r"\(0..255 values: divide by 255 or pass uint8\)",
        ),
        (torch.rand(3, 4, 4) * 2 - 1, r"argument 'sketch' must hold values in \[0, 1\], got \[-"),
        (torch.full((1, 4, 4), float("nan")), r"must hold values in \[0, 1\], got \[nan"),
        (
            torch.rand(2, 4, 4),
            r"argument 'sketch' must be a tensor \(C, H, W\) or \(B, C, H, W\) with C = 1, 3 or 4, "
            r"got shape \(2, 4, 4\)",
        ),
        (torch.rand(4, 4), r"got shape \(4, 4\)"),
        (torch.rand(1, 0, 4), r"got shape \(1, 0, 4\)"),
        (
            torch.zeros(1, 4, 4, dtype=torch.int64),
            r"floating point in \[0, 1\] or uint8, got tensor \(1, 4, 4\) of torch.int64",
        ),
        (
            np.zeros((4, 4, 2)),
            r"argument 'sketch' must be an array \(H, W\), \(H, W, C\) or \(B, H, W, C\) with C = 1, 3 or 4, "
            r"got shape \(4, 4, 2\)",
        ),
        (np.zeros((4, 4), dtype=np.int32), r"must be a float array in \[0, 1\] or uint8, got dtype int32"),
        (np.full((4, 4), 3.0), r"must hold values in \[0, 1\], got \[3, 3\]"),
    ],
)
def test_bad_tensors_and_arrays_are_one_line_errors(value, words):
    with pytest.raises(ValueError, match=words) as err:
        to_tensor(value, "sketch", op="Colorizer")
    assert "\n" not in str(err.value)


def test_other_types_and_missing_files(tmp_path):
    with pytest.raises(
        TypeError, match="argument 'reference' must be a path, a PIL image, a tensor or a numpy array, got list"
    ):
        to_tensor([[0.0]], "reference")
    with pytest.raises(FileNotFoundError, match="image not found"):
        to_tensor(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        to_tensor(tmp_path / "bad.png")


def test_one_folder_listing_for_training_inference_and_sketching(tmp_path):
    root = tmp_path / "data"
    for name in ("a.png", "B.JPG", "sub/c.webp", ".hidden.png", ".cache/d.png", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (10, 20, 30)).save(root / name, format="PNG")
    expected = [root / "B.JPG", root / "a.png", root / "sub/c.webp"]
    assert list(image_files(root)) == expected
    assert list_images(root) == [str(p) for p in expected]
    assert ImageFolder(root, size=4).paths == [str(p) for p in expected]
    written, skipped = sketch_files(root, tmp_path / "sketches", SketchExtractor(seed=0))
    assert (written, skipped) == (3, 0)
    assert sorted(p.relative_to(tmp_path / "sketches").as_posix() for p in (tmp_path / "sketches").rglob("*.png")) == [
        "B.png",
        "a.png",
        "sub/c.png",
    ]

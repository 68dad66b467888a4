"""ImageFolder and make_loader on real files: the bundled sample set and a zoo of awkward files."""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.data.image_folder import ImageFolder, UnreadableImageWarning, sample_images_dir
from refcolor.data.loader import make_loader, to_device

SAMPLES = sample_images_dir()
SAMPLE_FILES = sorted(SAMPLES.glob("*.png"))


def record(fn, *args, **kwargs):
    """(result, list of warning messages) with every warning shown, not just the first per location."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, UnreadableImageWarning)]


def jpeg_bytes(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


# --- the bundled sample set ----------------------------------------------------------------------


def test_bundled_set_loads():
    ds, warned = record(ImageFolder, SAMPLES, size=64)
    assert warned == [] and ds.skipped == []
    assert 100 <= len(ds) == len(SAMPLE_FILES) and ds.summary() == f"{len(ds)} images, 0 skipped"
    assert ds.paths == [str(f) for f in SAMPLE_FILES]  # sorted, deterministic
    for i in (0, len(ds) // 2, -1):
        item = ds[i]
        assert item["path"] == str(SAMPLE_FILES[i])
        img = item["image"]
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.05  # a picture, not a flat field
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_bundled_set_is_documented_and_small():
    sources = (SAMPLES / "SOURCES.md").read_text()
    assert all(f"`{f.name}`" in sources for f in SAMPLE_FILES)
    assert "Public Domain Dedication" in sources
    assert sum(f.stat().st_size for f in SAMPLES.iterdir()) < 10e6


def test_native_size_round_trips_pixels():
    """At the stored 128x128 the resize is the identity: the tensor is the file's pixels."""
    ds = ImageFolder(SAMPLES, size=128)
    expected = torch.from_numpy(np.array(Image.open(SAMPLE_FILES[3]).convert("RGB"))).permute(2, 0, 1)
    assert (ds[3]["image"] * 255 - expected).abs().max() <= 1


# --- a folder of awkward files ---------------------------------------------------------------------


@pytest.fixture
def zoo(tmp_path):
    """Readable files of every awkward kind, plus unreadable ones and files to ignore."""
    Image.new("RGB", (40, 30), (200, 30, 60)).save(tmp_path / "rgb.png")
    Image.new("L", (32, 32), 77).save(tmp_path / "gray.png")
    Image.fromarray(np.full((32, 32), 32768, np.uint16)).save(tmp_path / "gray16.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :, 0] = 255  # red everywhere ...
    rgba[:, 16:, 3] = 255  # ... but only the right half is opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.new("RGB", (1, 1), (0, 255, 0)).save(tmp_path / "one_pixel.png")
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 255, 255, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 32, 16))  # top half index 1 (yellow), bottom index 0 (blue)
    pal.save(tmp_path / "palette.png")
    pal.save(tmp_path / "palette_transparent.png", transparency=0)  # blue is transparent
    # Stored 64x32 with red left, blue right; EXIF orientation 6 shows it rotated 90 degrees
    # clockwise: 32 wide, 64 tall, red on top.
    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "rotated.jpg").write_bytes(jpeg_bytes(stored, exif=exif))
    Image.new("RGB", (20, 20), (10, 20, 30)).save(tmp_path / "UPPER.PNG")
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    Image.new("RGB", (24, 24), (90, 90, 200)).save(tmp_path / "sub" / "dir" / "nested.webp")
    Image.new("RGB", (24, 24)).save(tmp_path / "sub" / "bitmap.bmp")
    # Unreadable: skipped at scan time.
    real = SAMPLE_FILES[0].read_bytes()
    (tmp_path / "truncated.png").write_bytes(real[: len(real) // 2])
    (tmp_path / "not_an_image.jpg").write_text("hello, I am text")
    (tmp_path / "empty.webp").write_bytes(b"")
    # Ignored: other extensions and hidden files.
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "data.npy").write_bytes(real)
    (tmp_path / ".hidden.png").write_bytes(real)
    return tmp_path


READABLE = [
    "UPPER.PNG",
    "gray.png",
    "gray16.png",
    "one_pixel.png",
    "palette.png",
    "palette_transparent.png",
    "rgb.png",
    "rgba.png",
    "rotated.jpg",
    "sub/bitmap.bmp",
    "sub/dir/nested.webp",
]
UNREADABLE = ["empty.webp", "not_an_image.jpg", "truncated.png"]


def test_zoo_scan(zoo):
    ds, warned = record(ImageFolder, zoo, size=32)
    assert [os.path.relpath(p, zoo) for p in ds.paths] == READABLE
    assert sorted(os.path.relpath(p, zoo) for p, _ in ds.skipped) == UNREADABLE
    assert all(reason for _, reason in ds.skipped)
    for name in UNREADABLE:  # one warning per bad file, naming it
        assert sum(str(zoo / name) in w for w in warned) == 1
    assert len(warned) == len(UNREADABLE) + 1 and f"{len(READABLE)} images, 3 skipped" in warned[-1]
    assert ds.summary() == f"{len(READABLE)} images, 3 skipped"
    for i in range(len(ds)):
        img = ds[i]["image"]
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and 0 <= img.min() <= img.max() <= 1


def load(zoo, name, size=32):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImageWarning)  # the zoo's bad files, tested above
        return ImageFolder(zoo, size=size).load(str(zoo / name))


def test_zoo_conversions(zoo):
    def color(img):  # the single colour of a flat image (asserting it is flat)
        flat = img.reshape(3, -1)
        assert (flat - flat[:, :1]).abs().max() < 2 / 255
        return (flat[:, 0] * 255).round().tolist()

    assert color(load(zoo, "gray.png")) == [77] * 3
    assert color(load(zoo, "gray16.png")) == [128] * 3  # rescaled from 16 bits, not clipped at 255
    assert color(load(zoo, "one_pixel.png")) == [0, 255, 0]
    rgba = load(zoo, "rgba.png")
    assert color(rgba[:, :, :14]) == [255, 255, 255]  # transparent: white, not the hidden red
    assert color(rgba[:, :, 18:]) == [255, 0, 0]
    pal = load(zoo, "palette.png")
    assert color(pal[:, :14]) == [255, 255, 0] and color(pal[:, 18:]) == [0, 0, 255]
    pal_t = load(zoo, "palette_transparent.png")
    assert color(pal_t[:, :14]) == [255, 255, 0] and color(pal_t[:, 18:]) == [255, 255, 255]


def test_exif_orientation_applied(zoo):
    img = load(zoo, "rotated.jpg", size=32)  # upright: 32x64, centre square = rows 16..48
    top, bottom = img[:, :12].mean(dim=(1, 2)), img[:, 20:].mean(dim=(1, 2))
    assert top[0] > 0.9 and top[2] < 0.1, "red should be on top"
    assert bottom[2] > 0.9 and bottom[0] < 0.1, "blue should be at the bottom"
    assert (img[:, :, :16].mean(dim=2) - img[:, :, 16:].mean(dim=2)).abs().max() < 0.05  # no left/right split


def test_resize_keeps_centre_square(tmp_path):
    im = Image.new("RGB", (300, 100), (255, 0, 0))
    im.paste((0, 255, 0), (100, 0, 200, 100))  # the centre third green
    im.save(tmp_path / "wide.png")
    assert ImageFolder(tmp_path, size=50)[0]["image"][:, 5:-5, 5:-5].mean(dim=(1, 2)).tolist() == [0, 1, 0]
    crops = {
        tuple(ImageFolder(tmp_path, size=50, random_crop=True)[0]["image"].mean(dim=(1, 2)).tolist()) for _ in range(5)
    }
    assert len(crops) > 1  # random crops move along the long side


# --- errors ---------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    (tmp_path / "a.png").write_bytes(SAMPLE_FILES[0].read_bytes())
    with pytest.raises(NotADirectoryError, match="a.png"):
        ImageFolder(tmp_path / "a.png")


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no readable image under .*png, jpg, jpeg, webp, bmp"):
        ImageFolder(tmp_path)


def test_only_unreadable_files(tmp_path):
    (tmp_path / "bad.png").write_text("text")
    with pytest.raises(ValueError, match="1 unreadable"), pytest.warns(UnreadableImageWarning, match="bad.png"):
        ImageFolder(tmp_path)


# --- failures after the scan ------------------------------------------------------------------------


def test_load_time_failure_falls_back_to_next_image(tmp_path):
    """A truncated JPEG passes verify() at scan time; decoding it fails: the next image is served,
    with one warning, and it is counted."""
    data = jpeg_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)))
    (tmp_path / "a_truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (64, 64), (0, 0, 255)).save(tmp_path / "b_good.png")
    ds, warned = record(ImageFolder, tmp_path, size=16)
    assert len(ds) == 2 and warned == []
    item, warned = record(ds.__getitem__, 0)
    assert item["path"].endswith("b_good.png") and item["image"][2].min() == 1
    assert len(warned) == 1 and "a_truncated.jpg" in warned[0]
    _, warned = record(ds.__getitem__, 0)
    assert warned == []  # once per file
    assert [os.path.basename(p) for p, _ in ds.skipped] == ["a_truncated.jpg"]
    assert ds.summary() == "2 images, 1 skipped"
    (tmp_path / "b_good.png").write_bytes(b"")
    with pytest.raises(RuntimeError, match="none of the 2 images"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds[1]


def test_dataloader_workers_survive_files_broken_after_scan(tmp_path):
    for k in range(8):
        Image.new("RGB", (40, 40), (30 * k, 0, 0)).save(tmp_path / f"{k}.png")
    ds = ImageFolder(tmp_path, size=16)
    data = (tmp_path / "3.png").read_bytes()
    (tmp_path / "3.png").write_bytes(data[: len(data) // 2])  # truncated after the scan
    (tmp_path / "5.png").unlink()  # deleted after the scan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(make_loader(ds, 4, num_workers=2, shuffle=True, seed=0))
    paths = [os.path.basename(p) for b in batches for p in b["path"]]
    assert len(batches) == 2 and all(b["image"].shape == (4, 3, 16, 16) for b in batches)
    assert "3.png" not in paths and "5.png" not in paths


# --- loader ---------------------------------------------------------------------------------------


def test_loader_is_deterministic_with_a_seed(tmp_path):
    for k in range(12):  # wide images, so random crops differ
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (20, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{k:02d}.png"
        )
    ds = ImageFolder(tmp_path, size=16, random_crop=True)

    def epochs(seed, workers):
        loader = make_loader(ds, 4, num_workers=workers, seed=seed)
        return [[(b["path"], b["image"]) for b in loader] for _ in range(2)]

    def same(a, b):
        return all(
            pa == pb and torch.equal(ia, ib)
            for ea, eb in zip(a, b, strict=True)
            for (pa, ia), (pb, ib) in zip(ea, eb, strict=True)
        )

    run = epochs(1, 2)
    assert same(run, epochs(1, 2))  # same seed: same batches, crops included, epoch after epoch
    assert run[0][0][0] != run[1][0][0] or run[0][1][0] != run[1][1][0]  # epochs reshuffle
    assert not same(run, epochs(2, 2))
    torch.manual_seed(0)
    a = epochs(1, 0)
    torch.manual_seed(0)
    assert same(a, epochs(1, 0))  # in-process: crops follow torch's global seed
    assert [p for p, _ in a[0]] == [p for p, _ in run[0]]  # the shuffle order does not depend on workers


def test_loader_options_and_to_device():
    ds = list(range(10))
    assert make_loader(ds, 2, device="cuda", num_workers=0).pin_memory
    assert not make_loader(ds, 2, device="cpu", num_workers=0).pin_memory
    assert make_loader(ds, 2).num_workers == min(8, os.cpu_count())
    assert len(make_loader(ds, 4, num_workers=0)) == 2  # drop_last
    batch = {"image": torch.ones(2, 3), "path": ["a", "b"], "pair": (torch.zeros(1), 1)}
    moved = to_device(batch, "cpu")
    assert torch.equal(moved["image"], batch["image"]) and moved["path"] == ["a", "b"]
    assert isinstance(moved["pair"], tuple) and moved["pair"][1] == 1


# --- scripts/prepare_training_folder.py -------------------------------------------------------------


def test_prepare_training_folder_script(zoo, tmp_path_factory, capsys, monkeypatch):
    script = Path(__file__).resolve().parents[1] / "scripts" / "prepare_training_folder.py"
    spec = importlib.util.spec_from_file_location("prepare_training_folder", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # worker processes unpickle its functions by name
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("out")
    assert module.main([str(zoo), str(out), "--size", "24", "--jobs", "1"]) == 0
    assert "3 unreadable, 11 written" in capsys.readouterr().out
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == sorted(os.path.splitext(n)[0] + ".png" for n in READABLE)
    assert all(Image.open(out / w).size == (24, 24) and Image.open(out / w).mode == "RGB" for w in written)

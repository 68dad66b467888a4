"""Sketch extraction (refcolor.data.sketch): white background, lines at edges, range/shape/dtype,
per-sample parameters, SketchExtractor's randomisation and seeding, the gradient alternative, the
`refcolor sketch` CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor import cli
from refcolor.data.sketch import SketchExtractor, gaussian_blurs, gradient_sketch, luminance, xdog
from refcolor.demo import load_image

EXTRACTORS = {"xdog": xdog, "gradient": gradient_sketch}


def square_image(fg, bg, size=64, lo=16, hi=48) -> torch.Tensor:
    """(1, 3, size, size): a flat square of colour fg over rows/cols [lo, hi) on a flat bg."""
    image = torch.tensor(bg, dtype=torch.float32).view(1, 3, 1, 1).repeat(1, 1, size, size)
    image[..., lo:hi, lo:hi] = torch.tensor(fg, dtype=torch.float32).view(3, 1, 1)
    return image


@pytest.mark.parametrize("method", list(EXTRACTORS))
@pytest.mark.parametrize("color", [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.8, 0.2, 0.1), (0.1, 0.3, 0.9)])
def test_flat_image_is_white(method, color):
    image = torch.tensor(color).view(1, 3, 1, 1).expand(2, 3, 40, 30).contiguous()
    sketch = EXTRACTORS[method](image)
    assert sketch.shape == (2, 1, 40, 30)
    assert sketch.min() > 0.99  # flat regions draw nothing, whatever their colour


@pytest.mark.parametrize("method", list(EXTRACTORS))
@pytest.mark.parametrize(
    "fg, bg",
    [((0.2, 0.2, 0.2), (1.0, 1.0, 1.0)), ((0.9, 0.9, 0.9), (0.1, 0.1, 0.1)), ((0.9, 0.1, 0.1), (0.2, 0.8, 0.9))],
)
def test_lines_on_the_square_border_only(method, fg, bg):
    lo, hi = 16, 48
    sketch = EXTRACTORS[method](square_image(fg, bg, lo=lo, hi=hi))[0, 0]
    # Across each side of the square, a 4 px band (2 px either side of the edge) holds a dark line.
    sides = [
        sketch[lo - 2 : lo + 2, lo + 3 : hi - 3].amin(0),
        sketch[hi - 2 : hi + 2, lo + 3 : hi - 3].amin(0),
        sketch[lo + 3 : hi - 3, lo - 2 : lo + 2].amin(1),
        sketch[lo + 3 : hi - 3, hi - 2 : hi + 2].amin(1),
    ]
    for side in sides:
        assert side.max() < 0.3, side
    assert sketch[lo + 4 : hi - 4, lo + 4 : hi - 4].min() > 0.99  # interior
    ring = torch.ones_like(sketch, dtype=torch.bool)
    ring[lo - 4 : hi + 4, lo - 4 : hi + 4] = False
    assert sketch[ring].min() > 0.99  # background
    assert (sketch < 0.5).float().mean() < 0.15  # lines, not fills


@pytest.mark.parametrize("method", list(EXTRACTORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C, H, W", [(3, 23, 31), (1, 16, 9), (3, 1, 1), (3, 1, 12), (3, 5, 2)])
def test_range_shape_dtype(method, dtype, C, H, W):
    images = torch.rand(3, C, H, W, generator=torch.Generator().manual_seed(0), dtype=dtype)
    sketch = EXTRACTORS[method](images)
    assert sketch.shape == (3, 1, H, W) and sketch.dtype == dtype
    assert sketch.min() >= 0 and sketch.max() <= 1


def test_real_image_is_mostly_white_with_some_lines():
    image = load_image()  # the bundled clip-art illustration
    for sketch in (xdog(image), gradient_sketch(image), SketchExtractor(seed=0)(image)):
        assert sketch.shape == (1, 1, *image.shape[-2:])
        assert (sketch > 0.9).float().mean() > 0.8
        assert 0.01 < (sketch < 0.5).float().mean() < 0.2


def test_gaussian_blurs_of_an_impulse_is_the_normalised_kernel():
    impulse = torch.zeros(2, 1, 21, 21, dtype=torch.float64)
    impulse[:, :, 10, 10] = 1
    sigmas = torch.tensor([[0.5, 1.5], [1.0, 2.0]], dtype=torch.float64)
    blurred = gaussian_blurs(impulse, sigmas)
    assert blurred.shape == (2, 2, 21, 21)
    taps = torch.arange(-6, 7, dtype=torch.float64)  # radius ceil(3 * 2.0)
    for b in range(2):
        for s in range(2):
            w = torch.exp(-(taps**2) / (2 * sigmas[b, s] ** 2)) * (taps.abs() <= torch.ceil(3 * sigmas[b, s]))
            w = w / w.sum()
            torch.testing.assert_close(blurred[b, s, 4:17, 4:17], torch.outer(w, w))
            assert blurred[b, s].sum().item() == pytest.approx(1.0)


def test_per_sample_parameters_match_one_sample_at_a_time():
    images = load_image().expand(3, -1, -1, -1)[..., :64, :64].contiguous()
    params = {
        "sigma": torch.tensor([0.4, 0.55, 0.7]),
        "k": torch.tensor([2.0, 2.5, 3.0]),
        "tau": torch.tensor([0.95, 0.96, 0.94]),
        "epsilon": torch.tensor([0.0, -0.01, -0.005]),
        "phi": torch.tensor([50.0, 150.0, 300.0]),
    }
    batched = xdog(images, **params)
    for b in range(3):
        single = xdog(images[b : b + 1], **{n: float(v[b]) for n, v in params.items()})
        torch.testing.assert_close(batched[b : b + 1], single, atol=1e-4, rtol=0)  # float32 sums, times phi
    assert not torch.allclose(batched[0], batched[2], atol=1e-2)
    thresholds = torch.tensor([0.02, 0.1, 0.3])
    batched = gradient_sketch(images, threshold=thresholds)
    for b in range(3):
        single = gradient_sketch(images[b : b + 1], threshold=float(thresholds[b]))
        torch.testing.assert_close(batched[b : b + 1], single)


def test_luminance_is_rec601():
    rgb = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view(3, 3, 1, 1)
    torch.testing.assert_close(luminance(rgb).flatten(), torch.tensor([0.299, 0.587, 0.114]))


@pytest.mark.parametrize("method", ["xdog", "gradient"])
def test_extractor_randomises_per_sample_and_is_reproducible(method):
    images = load_image().expand(4, -1, -1, -1)[..., :96, :96].contiguous()  # 4 copies of one image
    a = SketchExtractor(method, seed=7)(images)
    assert a.shape == (4, 1, 96, 96)
    for i in range(1, 4):
        assert not torch.equal(a[0], a[i])  # one line style per sample
    assert torch.equal(a, SketchExtractor(method, seed=7)(images))  # same seed, same sketches
    b = SketchExtractor(method)(images, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)  # a private seed and a generator at that seed draw alike
    assert not torch.equal(a, SketchExtractor(method, seed=8)(images))
    module = SketchExtractor(method, seed=7)
    first = module(images)
    assert not torch.equal(first, module(images))  # the private generator moves on
    assert torch.equal(first, module.manual_seed(7)(images))


def test_extractor_draws_within_ranges_and_fixed_values_match_xdog():
    module = SketchExtractor(sigma=(0.4, 0.5), k=(2.0, 2.2), phi=(60.0, 70.0))
    params = module.sample_params(500, generator=torch.Generator().manual_seed(0))
    for name, (lo, hi) in module.ranges.items():
        assert params[name].dtype == torch.float64 and params[name].shape == (500,)
        assert params[name].min() >= lo and params[name].max() <= hi
    fixed = SketchExtractor(sigma=0.6, k=2.0, tau=0.9, epsilon=-0.01, phi=100.0)
    image = load_image()
    torch.testing.assert_close(fixed(image), xdog(image, sigma=0.6, k=2.0, tau=0.9, epsilon=-0.01, phi=100.0))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: xdog(torch.rand(1, 4, 8, 8)), ValueError, "C = 3"),
        (lambda: xdog(torch.rand(3, 8, 8)), ValueError, "(B, C, H, W)"),
        (lambda: xdog(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), TypeError, "floating-point"),
        (lambda: xdog(torch.rand(1, 3, 8, 8), sigma=0.0), ValueError, "'sigma'"),
        (lambda: xdog(torch.rand(2, 3, 8, 8), k=torch.ones(3)), ValueError, "shape (2,)"),
        (lambda: gradient_sketch(torch.rand(1, 3, 8, 8), softness=-1.0), ValueError, "'softness'"),
        (lambda: SketchExtractor("canny"), ValueError, "'method'"),
        (lambda: SketchExtractor(sigma=(0.7, 0.4)), ValueError, "'sigma'"),
        (lambda: SketchExtractor(k=(0.0, 1.0)), ValueError, "'k'"),
        (lambda: SketchExtractor()(torch.rand(1, 3, 8, 8), generator=3), TypeError, "'generator'"),
    ],
)
def test_argument_errors(call, error, words):
    with pytest.raises(error) as exc:
        call()
    assert words in str(exc.value)


# --- the `refcolor sketch` CLI --------------------------------------------------------------------


def _save(path, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, "white")
    image.paste((200, 30, 30) if mode == "RGB" else (200, 30, 30, 255), (8, 8, 24, 20))
    image.save(path)


def test_cli_on_a_file(tmp_path, capsys):
    src = tmp_path / "in.png"
    _save(src, mode="RGBA")
    out = tmp_path / "out.png"
    assert cli.main(["sketch", str(src), str(out)]) == 0
    assert "wrote 1 sketch" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (40, 30)
        pixels = torch.from_numpy(np.asarray(im, dtype=np.float32)) / 255
    expected = xdog(load_image(src))[0, 0]  # RGBA composited on white, as the CLI reads it
    assert (pixels - expected).abs().max() <= 0.5 / 255 + 1e-6  # the fixed defaults, rounded to 8 bits
    assert pixels.min() < 0.3 and (pixels > 0.99).float().mean() > 0.7
    # Into an existing folder; gradient method; a random style with --seed is reproducible.
    folder = tmp_path / "dir"
    folder.mkdir()
    assert cli.main(["sketch", str(src), str(folder), "--method", "gradient"]) == 0
    assert (folder / "in.png").is_file()
    for name in ("s1.png", "s2.png"):
        assert cli.main(["sketch", str(src), str(tmp_path / name), "--seed", "5", "--phi", "80"]) == 0
    assert (tmp_path / "s1.png").read_bytes() == (tmp_path / "s2.png").read_bytes()


def test_cli_on_a_folder_skips_and_counts_bad_files(tmp_path, capsys):
    src = tmp_path / "in"
    _save(src / "a.png")
    _save(src / "sub" / "b.jpg", size=(17, 23))
    _save(src / "sub" / "deeper" / "c.PNG", mode="RGBA")
    (src / "sub" / "bad.png").write_bytes(b"not an image")
    good = (src / "a.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "notes.txt").write_text("not an image extension: ignored")
    out = tmp_path / "out"
    assert cli.main(["sketch", str(src), str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote 3 sketches" in captured.out and "skipped 2 unreadable files" in captured.out
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2 and all("warning" in w for w in warnings)
    assert any("bad.png" in w for w in warnings) and any("truncated.png" in w for w in warnings)
    assert "Traceback" not in captured.err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    with Image.open(out / "sub" / "b.png") as im:
        assert im.size == (17, 23) and im.mode == "L"


@pytest.mark.parametrize(
    "args, words",
    [
        (["/nonexistent/pictures", "OUT"], "no such file or folder"),
        (["IN", "OUT", "--threshold", "0.1"], "--threshold"),
        (["IN", "OUT", "--sigma", "-1"], "sigma"),
        (["EMPTY", "OUT"], "no readable images"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, words):
    _save(tmp_path / "in.png")
    (tmp_path / "empty").mkdir()
    names = {"IN": str(tmp_path / "in.png"), "OUT": str(tmp_path / "out.png"), "EMPTY": str(tmp_path / "empty")}
    with pytest.raises(SystemExit) as exc:
        cli.main(["sketch", *[names.get(a, a) for a in args]])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and words in err, err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out.png").exists()

"""line_regions: the rule itself on the reference (gap closing at its boundary widths, diagonal lines,
min_area merges, raster order, full coverage), every kernel backend against the reference label for
label (random line drawings, bundled sketches, edge cases, layouts, dtypes), and bad arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import refcolor
from refcolor.ops import line_regions, line_regions_reference
from refcolor.ops.line_regions import DTYPES

ASSETS = Path(refcolor.__file__).parent / "assets"


def kernel_backends(device: str = "cpu") -> list[str]:
    """The kernel backends of this op usable here (the reference is the ground truth)."""
    return [b for b in refcolor.available_backends(device) if b in DTYPES and b != "reference"]


def backend_params():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    params = [pytest.param(b, d, id=f"{b}-{d}") for d in devices for b in kernel_backends(d)]
    return params or [pytest.param(None, None, marks=pytest.mark.skip(reason="no kernel backend is built"))]


def drawing(H: int, W: int, seed: int, *, strokes: int = 12, max_width: int = 3) -> np.ndarray:
    """A random line drawing (H, W) float32 in [0, 1]: straight strokes, polylines and circles of
    1..max_width pixels, with random breaks (gaps of 1-12 pixels) in some of them, and a few grey
    anti-aliased edge pixels so the threshold matters."""
    rng = np.random.default_rng(seed)
    img = np.ones((H, W), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]

    def stamp(points: np.ndarray, width: int) -> None:
        for y, x in points:
            y0, x0 = int(round(y)) - width // 2, int(round(x)) - width // 2
            img[max(0, y0) : max(0, y0 + width), max(0, x0) : max(0, x0 + width)] = 0.0

    for _ in range(strokes):
        kind = rng.integers(3)
        width = int(rng.integers(1, max_width + 1))
        if kind == 2:  # circle
            cy, cx = rng.uniform(0, H), rng.uniform(0, W)
            rad = rng.uniform(3, max(4, min(H, W) / 2))
            t = np.linspace(0, 2 * np.pi, int(8 * rad) + 8)
            pts = np.stack([cy + rad * np.sin(t), cx + rad * np.cos(t)], 1)
        else:  # a segment, or a polyline of 3-5 vertices
            verts = np.stack([rng.uniform(-2, H + 2, 2 + 3 * kind), rng.uniform(-2, W + 2, 2 + 3 * kind)], 1)
            pts = np.concatenate(
                [
                    np.linspace(a, b, int(np.abs(b - a).max() * 2) + 2)
                    for a, b in zip(verts[:-1], verts[1:], strict=True)
                ]
            )
        if rng.random() < 0.6:  # a break of 1-12 samples' worth of pixels
            start, length = int(rng.integers(len(pts))), int(rng.integers(2, 25))
            pts = np.concatenate([pts[:start], pts[start + length :]])
        stamp(pts, width)
    grey = rng.random((H, W)) < 0.03
    img[grey] = rng.uniform(0.5, 1.0, grey.sum()).astype(np.float32)
    return img


def sketch_tensor(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images))[:, None].contiguous()


def assert_canonical(labels: torch.Tensor) -> None:
    """Full coverage, labels 0..R-1 all present, numbered in raster order of first pixels."""
    for lab in labels:
        flat = lab.flatten().numpy()
        values, first = np.unique(flat, return_index=True)
        assert values[0] == 0 and np.array_equal(values, np.arange(len(values)))
        assert np.all(np.diff(first) > 0), "labels are not in raster order of their first pixels"


def assert_same(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.dtype == torch.int64 and actual.shape == expected.shape, (actual.dtype, actual.shape)
    diff = (actual.cpu() != expected.cpu()).sum().item()
    assert diff == 0, f"{what}: {diff} pixels differ from the reference"


# ---- the rule, on the reference ----------------------------------------------------------------


def broken_wall(gap_pixels: int, H: int = 40, W: int = 41) -> torch.Tensor:
    """A one-pixel vertical wall from top to bottom with `gap_pixels` missing in its middle."""
    img = np.ones((H, W), np.float32)
    img[:, W // 2] = 0
    top = (H - gap_pixels) // 2
    img[top : top + gap_pixels, W // 2] = 1
    return sketch_tensor(img)


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 5, 6])
def test_gap_closes_exactly_at_the_documented_widths(gap):
    """A gap of at most `gap` pixels closes; with odd `gap` one of gap + 1 closes too (pixel-centre
    distances cannot tell 2k - 1 from 2k); gap + 2 never does."""
    for width in range(1, gap + 4):
        closes = width <= gap or (gap % 2 == 1 and width == gap + 1)
        count = int(line_regions_reference(broken_wall(width), gap=gap).max()) + 1
        assert count == (2 if closes else 1), f"gap={gap}, missing pixels {width}: {count} regions"
    assert int(line_regions_reference(broken_wall(3), gap=0).max()) == 0  # gap 0 closes nothing


def test_diagonal_line_closes_an_area():
    img = np.ones((20, 20), np.float32)
    np.fill_diagonal(img, 0)
    labels = line_regions_reference(sketch_tensor(img))
    assert int(labels.max()) == 1
    assert labels[0, 0, 19] != labels[0, 19, 0]  # above and below the diagonal differ
    assert labels[0, 0, 0] == 0


def test_small_regions_merge_into_the_neighbour_with_most_border():
    # A 3x3 box (9 pixels inside) in the left half of a wall-split image.
    img = np.ones((30, 30), np.float32)
    img[:, 20] = 0
    img[4:9, 4:9] = 0
    img[5:8, 5:8] = 1
    x = sketch_tensor(img)
    kept = line_regions_reference(x, min_area=9)
    assert int(kept.max()) == 2  # left, box, right
    merged = line_regions_reference(x, min_area=10)
    assert int(merged.max()) == 1
    assert merged[0, 6, 6] == merged[0, 0, 0] != merged[0, 0, 29]
    assert_canonical(merged)


def test_line_pixels_join_the_nearest_region_and_cover_the_image():
    img = np.ones((16, 17), np.float32)
    img[:, 7:10] = 0  # a wall three pixels wide
    labels = line_regions_reference(sketch_tensor(img))
    assert_canonical(labels)
    assert (labels[0, :, :8] == 0).all() and (labels[0, :, 9:] == 1).all()  # the middle column ties: 0
    assert (labels[0, :, 8] == 0).all()


def test_raster_order_and_full_coverage_on_a_drawing():
    labels = line_regions_reference(sketch_tensor(drawing(48, 64, 3)), gap=3, min_area=5)
    assert_canonical(labels)
    assert int(labels.max()) >= 3


def test_only_lines_and_no_lines_are_one_region():
    for value in (0.0, 1.0):
        labels = line_regions_reference(torch.full((1, 1, 7, 9), value), gap=4)
        assert (labels == 0).all()


# ---- kernels against the reference --------------------------------------------------------------

DRAWINGS = [  # (H, W, seed)
    (37, 53, 0),
    (64, 48, 1),
    (80, 96, 2),
    (33, 120, 3),
]


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("gap,min_area", [(0, 0), (1, 0), (2, 7), (3, 0), (5, 30), (10, 0), (10, 15)])
def test_backend_matches_reference_on_random_drawings(backend, device, gap, min_area):
    for H, W, seed in DRAWINGS:
        x = sketch_tensor(drawing(H, W, seed + 10 * gap))
        expected = line_regions_reference(x, 0.8, gap, min_area)
        actual = line_regions(x.to(device), 0.8, gap, min_area, backend=backend)
        assert_same(actual, expected, f"{H}x{W} seed {seed} gap {gap} min_area {min_area}")


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_matches_reference_on_large_drawings_in_row_strips(backend, device):
    """Images large enough for the kernels to split rows among threads: strip boundaries must not
    change a label, whatever the thread count (one thread is one strip, the path every other test
    checks against the reference, which is too slow to run here at every setting)."""
    # 1030 x 520 = 535,600 pixels: above the CPU kernel's half-megapixel threshold for row strips.
    x = sketch_tensor(drawing(1030, 520, 7, strokes=60)).to(device)
    assert_same(line_regions(x, 0.8, 0, 0, backend=backend), line_regions_reference(x, 0.8, 0, 0), "gap 0")
    threads = torch.get_num_threads()
    try:
        for gap, min_area in ((0, 0), (4, 40), (9, 0)):
            torch.set_num_threads(1)
            one = line_regions(x, 0.8, gap, min_area, backend=backend)
            torch.set_num_threads(3)
            assert_same(line_regions(x, 0.8, gap, min_area, backend=backend), one, f"gap {gap} min_area {min_area}")
    finally:
        torch.set_num_threads(threads)


def _bundled_sketches(size: int = 160) -> torch.Tensor:
    """The demo sketch and two bundled samples through refcolor's XDoG sketch extraction."""
    from PIL import Image

    from refcolor.data.sketch import xdog

    demo = Image.open(ASSETS / "demo" / "sketch.png").convert("L").resize((size, size))
    out = [torch.from_numpy(np.asarray(demo, np.float32) / 255)[None, None]]
    for name in sorted(p.name for p in (ASSETS / "samples").glob("*.png"))[:2]:
        rgb = Image.open(ASSETS / "samples" / name).convert("RGB").resize((size, size))
        image = torch.from_numpy(np.asarray(rgb, np.float32) / 255).permute(2, 0, 1)[None]
        out.append(xdog(image))
    return torch.cat(out)


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_matches_reference_on_real_sketches(backend, device):
    x = _bundled_sketches()
    for gap, min_area in ((0, 0), (3, 20), (6, 0)):
        expected = line_regions_reference(x, 0.8, gap, min_area)
        assert int(expected.max()) > 3  # real structure, not a trivial map
        assert_same(line_regions(x.to(device), 0.8, gap, min_area, backend=backend), expected, f"gap {gap}")


EDGE_CASES = {
    "all_line": np.zeros((9, 11), np.float32),
    "no_line": np.ones((9, 11), np.float32),
    "one_pixel_line": np.zeros((1, 1), np.float32),
    "one_pixel_paper": np.ones((1, 1), np.float32),
    "one_row": (np.arange(23) % 5 != 0).astype(np.float32)[None],
    "one_column": (np.arange(23) % 4 != 0).astype(np.float32)[:, None],
    "gap_wider_than_gap": broken_wall(7)[0, 0].numpy(),
    "gap_within_gap": broken_wall(3)[0, 0].numpy(),
    "narrow_slivers": np.tile(np.array([0, 1, 1, 0, 1, 0, 1, 1, 1, 0], np.float32), (12, 2)),
    "checkerboard": (np.indices((10, 12)).sum(0) % 2).astype(np.float32),
}


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_backend_matches_reference_on_edge_cases(backend, device, case):
    x = sketch_tensor(EDGE_CASES[case])
    for gap, min_area in ((0, 0), (4, 0), (4, 3), (1000, 0)):
        expected = line_regions_reference(x, 0.8, gap, min_area)
        assert_same(line_regions(x.to(device), 0.8, gap, min_area, backend=backend), expected, f"{case} gap {gap}")


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_batch_with_different_region_counts(backend, device):
    x = sketch_tensor(drawing(40, 50, 21), np.ones((40, 50), np.float32), drawing(40, 50, 22, strokes=30))
    expected = line_regions_reference(x, 0.8, 2, 4)
    assert len({int(m) for m in expected.amax(dim=(1, 2))}) == 3
    assert_same(line_regions(x.to(device), 0.8, 2, 4, backend=backend), expected, "batch")


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_reads_any_layout(backend, device):
    base = sketch_tensor(drawing(70, 90, 31), drawing(70, 90, 32)).to(device)
    views = {
        "row_and_column_sliced": base[:, :, 3::2, 1:-2],
        "transposed": base.transpose(2, 3),
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "batch_strided": torch.cat([base, base]).flip(0)[::2],
        "expanded": base[:1].expand(3, 1, 70, 90),
    }
    for name, x in views.items():
        expected = line_regions_reference(x.contiguous(), 0.8, 3, 5)
        assert_same(line_regions(x, 0.8, 3, 5, backend=backend), expected, name)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=["f16", "bf16", "f64"])
def test_backend_thresholds_in_the_sketch_dtype(backend, device, dtype):
    """The threshold is rounded to the sketch's dtype; values just either side of it must split
    exactly as the reference's `sketch < threshold` does."""
    if dtype not in DTYPES[backend]:
        pytest.skip(f"{backend} does not take {dtype}")
    x = sketch_tensor(drawing(50, 60, 41)).to(dtype)
    thr = 0.7
    at = torch.tensor(thr, dtype=dtype)
    below, above = (
        torch.nextafter(at, torch.tensor(0.0, dtype=dtype)),
        torch.nextafter(at, torch.tensor(1.0, dtype=dtype)),
    )
    x = x.clone()
    x[0, 0, ::3, ::5] = at
    x[0, 0, 1::3, ::7] = below
    x[0, 0, 2::3, ::4] = above
    # Between `at` and `above`: a quarter of the way rounds down to `at` (so pixels equal to `at`
    # are not lines, though `at` < the unrounded threshold), three quarters rounds up to `above`.
    quarter, three_quarters = (float(at) * (1 - w) + float(above) * w for w in (0.25, 0.75))
    for threshold in (thr, float(at), quarter, three_quarters):
        expected = line_regions_reference(x, threshold, 2, 0)
        assert_same(line_regions(x.to(device), threshold, 2, 0, backend=backend), expected, f"{dtype} {threshold}")


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_under_torch_compile(backend, device):
    x = sketch_tensor(drawing(30, 40, 51)).to(device)
    compiled = torch.compile(lambda s: line_regions(s, 0.8, 2, 3, backend=backend), backend="eager", fullgraph=True)
    assert_same(compiled(x), line_regions_reference(x, 0.8, 2, 3), "compiled")


# ---- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"threshold": 0.0}, ValueError, "line_regions: argument 'threshold' must be in (0, 1], got 0.0"),
        ({"threshold": "0.5"}, TypeError, "line_regions: argument 'threshold' must be a number in (0, 1], got str"),
        ({"gap": -1}, ValueError, "line_regions: argument 'gap' must be >= 0, got -1"),
        ({"gap": 2.0}, TypeError, "line_regions: argument 'gap' must be an int >= 0, got float"),
        ({"min_area": True}, TypeError, "line_regions: argument 'min_area' must be an int >= 0, got bool"),
        ({"backend": "nope"}, ValueError, "line_regions: unknown backend 'nope'"),
    ],
)
def test_bad_arguments_give_one_line_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        line_regions(torch.ones(1, 1, 4, 4), **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "sketch",
    [torch.ones(1, 3, 4, 4), torch.ones(4, 4), torch.ones(1, 1, 0, 4), torch.ones(1, 1, 4, 4, dtype=torch.int64)],
    ids=["three_channels", "two_dims", "empty", "integer"],
)
def test_bad_sketches_give_one_line_errors(sketch):
    with pytest.raises((TypeError, ValueError)) as info:
        line_regions(sketch)
    assert str(info.value).startswith("line_regions: argument 'sketch'") and "\n" not in str(info.value)


# ---- the CUDA kernels' logic, emulated on the host -------------------------------------------


def _emulation():
    from refcolor import _extension

    if _extension.compiled_module() is None:
        pytest.skip("refcolor._C is not built")
    return torch.ops.refcolor.line_regions_cuda_emulation


@pytest.mark.parametrize("gap,min_area", [(0, 0), (2, 7), (5, 30), (10, 0)])
def test_cuda_logic_emulated_on_host(gap, min_area):
    """The CUDA kernels' per-thread work (line_regions_cuda_logic.h) in launch order on the host, with
    the CUDA glue's threshold rounding: equal to the reference label for label."""
    emulate = _emulation()
    for H, W, seed in DRAWINGS[:3]:
        x = sketch_tensor(drawing(H, W, seed + 10 * gap))
        assert_same(emulate(x, 0.8, gap, min_area), line_regions_reference(x, 0.8, gap, min_area), f"{H}x{W}")
    x = _bundled_sketches(96)
    assert_same(emulate(x, 0.8, gap, min_area), line_regions_reference(x, 0.8, gap, min_area), "bundled sketches")
    for case, image in EDGE_CASES.items():
        x = sketch_tensor(image)
        assert_same(emulate(x, 0.8, gap, min_area), line_regions_reference(x, 0.8, gap, min_area), case)
    x = sketch_tensor(drawing(40, 50, 61)).to(torch.bfloat16)
    assert_same(emulate(x, 0.7, gap, min_area), line_regions_reference(x, 0.7, gap, min_area), "bfloat16")

"""tps_correspondence: identity and shifted grids, coarser/finer key lattices, ties, a brute-force
reference on real RandomTPS grids, and argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from refcolor.nn import RandomTPS
from refcolor.ops.tps import pixel_coordinates
from refcolor.ops.tps_correspondence import tps_correspondence
from tests.helpers import devices


def identity_grid(B, H, W, dtype=torch.float32) -> torch.Tensor:
    xs, ys = pixel_coordinates((H, W), dtype=dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(B, H, W, 2).clone()


def lattice(h, w) -> torch.Tensor:
    """(h * w, 2) float64 cell centres, row-major, align_corners=True."""
    xs, ys = pixel_coordinates((h, w), dtype=torch.float64)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)


def brute_force(grid, query_size, key_size):
    """Loops over every key cell: the documented rule, written out."""
    hq, wq = query_size
    hk, wk = key_size
    B, H, W, _ = grid.shape
    g = grid.double()
    index = torch.zeros(B, hq * wq, dtype=torch.int64)
    valid = torch.zeros(B, hq * wq, dtype=torch.bool)
    best = torch.full((B, hq * wq), math.inf, dtype=torch.float64)
    centres = lattice(hq, wq)
    for b in range(B):
        for r in range(hk):
            for c in range(wk):
                # bilinear sample of the grid at key centre (r, c), in pixel units
                py = r * (H - 1) / (hk - 1) if hk > 1 else 0.0
                px = c * (W - 1) / (wk - 1) if wk > 1 else 0.0
                y0, x0 = min(int(py), H - 1), min(int(px), W - 1)
                y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
                fy, fx = py - y0, px - x0
                loc = (
                    g[b, y0, x0] * (1 - fy) * (1 - fx)
                    + g[b, y0, x1] * (1 - fy) * fx
                    + g[b, y1, x0] * fy * (1 - fx)
                    + g[b, y1, x1] * fy * fx
                )
                if loc.abs().max() > 1 + 1e-4:
                    continue
                qc = min(max(round((loc[0].item() + 1) / 2 * (wq - 1)), 0), wq - 1)
                qr = min(max(round((loc[1].item() + 1) / 2 * (hq - 1)), 0), hq - 1)
                q = qr * wq + qc
                d = (loc - centres[q]).pow(2).sum().item()
                if d < best[b, q]:  # strict: the first (smallest) key index wins a tie
                    best[b, q], index[b, q], valid[b, q] = d, r * wk + c, True
    return index, valid, best


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("H, W, size", [(8, 6, (8, 6)), (32, 24, (8, 6)), (29, 29, (8, 8)), (17, 40, (5, 9))])
def test_identity_grid_is_identity_permutation(device, H, W, size):
    index, valid = tps_correspondence(identity_grid(2, H, W).to(device), size)
    assert index.shape == valid.shape == (2, size[0] * size[1])
    assert index.dtype == torch.int64 and valid.dtype == torch.bool and index.device.type == device
    assert valid.all()
    assert torch.equal(index.cpu(), torch.arange(size[0] * size[1]).expand(2, -1))


def test_zero_jitter_random_tps_grid_is_identity():
    """An identity spline is identity only up to float error, also at the border (tolerance)."""
    _, grid = RandomTPS(jitter=0.0, backend="reference", seed=0)(torch.rand(3, 1, 33, 33))
    index, valid = tps_correspondence(grid, (16, 16))
    assert valid.all() and torch.equal(index, torch.arange(256).expand(3, -1))


def test_identity_grid_with_finer_key_lattice():
    """Key 7x7 over query 4x4: key cells 0, 2, 4, 6 of each axis sit on the query centres."""
    index, valid = tps_correspondence(identity_grid(1, 25, 25), (4, 4), (7, 7))
    r, c = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    assert valid.all()
    assert torch.equal(index[0], (2 * r * 7 + 2 * c).flatten())


def test_identity_grid_with_coarser_key_lattice():
    """Key 4x4 over query 7x7: only the query cells on the key centres get a key."""
    index, valid = tps_correspondence(identity_grid(1, 25, 25), (7, 7), (4, 4))
    r, c = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    on_key = ((r % 2 == 0) & (c % 2 == 0)).flatten()
    assert torch.equal(valid[0], on_key)
    assert torch.equal(index[0][on_key], ((r // 2) * 4 + c // 2).flatten()[on_key])
    assert torch.all(index[0][~on_key] == 0)


@pytest.mark.parametrize("query_size, key_size", [((5, 6), (7, 4)), ((6, 6), (12, 14)), ((12, 9), (4, 5))])
def test_identity_grid_geometry_non_divisible(query_size, key_size):
    """Each query keeps the key whose centre is nearest to its own, among keys rounding into it.
    (Sizes chosen so that no key centre falls exactly half-way between two query centres.)"""
    grid = identity_grid(1, 23, 19)
    index, valid = tps_correspondence(grid, query_size, key_size)
    ref_index, ref_valid, _ = brute_force(grid, query_size, key_size)
    assert torch.equal(valid, ref_valid) and torch.equal(index, ref_index)
    chosen = lattice(*key_size)[index[0][valid[0]]]
    spacing = torch.tensor([2 / (query_size[1] - 1), 2 / (query_size[0] - 1)], dtype=torch.float64)
    assert torch.all((chosen - lattice(*query_size)[valid[0]]).abs() <= spacing / 2 + 1e-6)


@pytest.mark.parametrize("H, W, key", [(8, 8, (8, 8)), (29, 29, (8, 8)), (13, 25, (4, 7))])
@pytest.mark.parametrize("axis, sign", [(0, 1), (0, -1), (1, 1), (1, -1)])
def test_shift_by_one_key_cell(H, W, key, axis, sign):
    """Reference pixel p shows target p + one key cell: key cell c maps to query cell c + 1."""
    hk, wk = key
    grid = identity_grid(2, H, W)
    step = 2 / ((wk if axis == 0 else hk) - 1)
    grid[..., axis] += sign * step
    index, valid = tps_correspondence(grid, key)
    r, c = torch.meshgrid(torch.arange(hk), torch.arange(wk), indexing="ij")
    if axis == 0:
        src_c, src_r = c - sign, r
        expect_valid = (src_c >= 0) & (src_c < wk)
    else:
        src_c, src_r = c, r - sign
        expect_valid = (src_r >= 0) & (src_r < hk)
    expect_valid = expect_valid.flatten().expand(2, -1)
    assert torch.equal(valid, expect_valid)  # the row/column shifted in from outside is invalid
    expect_index = (src_r * wk + src_c).flatten().expand(2, -1)
    assert torch.equal(index[valid], expect_index[valid])


def test_ties_go_to_the_smallest_key_index_and_closest_wins():
    # Three reference pixels (key cells 0, 1, 2); query lattice 1 x 3 with centres x = -1, 0, 1, y = -1.
    grid = torch.tensor([[[[0.1, -1.0], [-0.1, -1.0], [0.1, -1.0]]]])
    index, valid = tps_correspondence(grid, (1, 3), (1, 3))
    assert valid.tolist() == [[False, True, False]] and index[0, 1] == 0  # exact tie: key 0
    grid[0, 0, 0, 0] = 0.2  # key 1 (at -0.1) and key 2 (at 0.1) now tie closest: key 1
    index, valid = tps_correspondence(grid, (1, 3), (1, 3))
    assert index[0, 1] == 1
    grid[0, 0, 2, 0] = 0.05
    assert tps_correspondence(grid, (1, 3), (1, 3))[0][0, 1] == 2


def test_locations_outside_map_nowhere():
    grid = identity_grid(2, 9, 9)
    grid[1] = grid[1] * 0.5 + 1.6  # sample 1: everything from outside the target
    grid[0, :, :, 0] *= 1.4  # sample 0: reference column c shows target x = 1.4 (-1 + c / 4)
    index, valid = tps_correspondence(grid, (9, 9))
    assert not valid[1].any() and torch.all(index[1] == 0)
    # Key columns 0, 1, 7, 8 land outside; 2..6 land at x = -0.7, -0.35, 0, 0.35, 0.7, i.e. query
    # columns 1.2, 2.6, 4, 5.4, 6.8 -> 1, 3, 4, 5, 7.
    key_col = {1: 2, 3: 3, 4: 4, 5: 5, 7: 6}
    rows, cols = torch.arange(81) // 9, torch.arange(81) % 9
    expect_valid = torch.tensor([int(c) in key_col for c in cols])
    assert torch.equal(valid[0], expect_valid)
    expect_index = torch.tensor([int(r) * 9 + key_col.get(int(c), 0) for r, c in zip(rows, cols, strict=True)])
    assert torch.equal(index[0], torch.where(expect_valid, expect_index, 0))


@pytest.mark.parametrize("query_size, key_size", [((8, 8), (8, 8)), ((6, 9), (10, 7))])
def test_random_tps_matches_brute_force(query_size, key_size):
    _, grid = RandomTPS(grid_sizes=(3, 5), jitter=0.15, backend="reference", seed=7)(torch.zeros(3, 1, 31, 27))
    index, valid = tps_correspondence(grid, query_size, key_size)
    ref_index, ref_valid, _ = brute_force(grid, query_size, key_size)
    assert torch.equal(valid, ref_valid)
    assert torch.equal(index, ref_index)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_tps_grid_mostly_valid_and_close(dtype):
    B, size = 8, (32, 32)
    images = torch.zeros(B, 1, 64, 64, dtype=dtype)
    _, grid = RandomTPS(jitter=0.1, backend="reference", seed=0)(images)
    index, valid = tps_correspondence(grid, size)
    fraction = valid.double().mean(1)
    assert fraction.mean() > 0.8 and fraction.min() > 0.7, fraction
    # The chosen key cell's target location is within one query-cell spacing of the query centre.
    loc = (
        torch.nn.functional.grid_sample(
            grid.double().permute(0, 3, 1, 2),
            lattice(*size).reshape(1, *size, 2).expand(B, -1, -1, -1),
            align_corners=True,
        )
        .flatten(2)
        .transpose(1, 2)
    )  # (B, K, 2): the grid at the key centres
    chosen = loc.gather(1, index[..., None].expand(-1, -1, 2))
    dist = (chosen - lattice(*size)).norm(dim=-1)
    assert torch.all(dist[valid] <= 2 / 31 * math.sqrt(0.5) + 1e-6)
    # Each valid query got a distinct key (a key lands in one query cell only).
    for b in range(B):
        assert index[b][valid[b]].unique().numel() == int(valid[b].sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_positives_show_the_query_content_on_real_augmented_triples(seed):
    """The triplet loss's positives on real AugmentedSelfReference triples: the target paints each
    query cell's Voronoi region (nearest cell centre) in its own colour, so the reference pixel at a
    key-cell centre shows which query cell's content the warp moved there. The positive key of each
    valid query cell must show that query cell (except where the warp put the key centre within a pixel
    of a region border, a blend of two colours, left unchecked)."""
    from refcolor.data.augmented_self_reference import AugmentedSelfReference

    B, n, step = 4, 16, 8
    size = (n - 1) * step + 1  # 121 px: cell centres fall on pixels 0, 8, ..., 120
    g = torch.Generator().manual_seed(100 + seed)
    palette = 0.2 + 0.6 * torch.rand(B, 3, n, n, generator=g, dtype=torch.float64)
    cell = torch.round(torch.arange(size, dtype=torch.float64) / step).long()
    images = palette[:, :, cell][:, :, :, cell]  # (B, 3, 121, 121): nearest-centre regions
    out = AugmentedSelfReference(seed=seed, tps_jitter=0.2)(images)  # moves cells by about 1.5 cells
    index, valid = tps_correspondence(out["grid"], (n, n))
    centres = torch.arange(n) * step
    shown = out["reference"][:, :, centres][:, :, :, centres].flatten(2)  # (B, 3, 256): colour at key centres
    colours = out["target"][:, :, centres][:, :, :, centres].flatten(2)  # (B, 3, 256): colour of each query cell
    distance = torch.cdist(shown.transpose(1, 2), colours.transpose(1, 2))  # (B, keys, query cells)
    nearest, which = distance.min(-1)  # key -> query cell whose colour it shows
    pure = nearest < 1e-4  # False where bilinear sampling within a pixel of a border blended two cells
    positive_shows, positive_pure = which.gather(1, index), pure.gather(1, index)
    queries = torch.arange(n * n).expand(B, -1)
    checked = valid & positive_pure
    assert checked.double().mean() > 0.5 and checked.sum() > 0.7 * valid.sum(), (checked.sum(), valid.sum())
    assert torch.equal(positive_shows[checked], queries[checked])
    assert (index != queries)[valid].double().mean() > 0.5  # the warp moved most cells: not an identity


def test_grid_requiring_grad_is_fine():
    grid = identity_grid(1, 10, 10).requires_grad_()
    index, valid = tps_correspondence(grid, (5, 5))
    assert valid.all() and not index.requires_grad


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (([[0.0, 0.0]], (4, 4)), {}, TypeError, "'grid' must be a torch.Tensor"),
        ((torch.zeros(1, 4, 4, 2, dtype=torch.int64), (4, 4)), {}, TypeError, "'grid' must be a floating-point"),
        ((torch.zeros(4, 4, 2), (4, 4)), {}, ValueError, r"'grid' must have shape \(B, H, W, 2\) \(4 dims\)"),
        ((torch.zeros(1, 4, 4, 3), (4, 4)), {}, ValueError, r"'grid' must have shape \(B, H, W, 2\), got \(1, 4, 4, 3"),
        ((torch.zeros(0, 4, 4, 2), (4, 4)), {}, ValueError, "'grid' .* must not be empty"),
        ((torch.full((1, 4, 4, 2), math.nan), (4, 4)), {}, ValueError, "'grid' holds NaN"),
        ((torch.zeros(1, 4, 4, 2), (4, 0)), {}, ValueError, r"'query_size' must be \(h, w\) with positive ints"),
        ((torch.zeros(1, 4, 4, 2), 4), {}, ValueError, "'query_size'"),
        ((torch.zeros(1, 4, 4, 2), (4, 4.0)), {}, ValueError, "'query_size'"),
        ((torch.zeros(1, 4, 4, 2), (4, 4), (3,)), {}, ValueError, r"'key_size' must be \(h, w\)"),
        ((torch.zeros(1, 4, 4, 2), (4, 4)), {"tolerance": -1.0}, ValueError, "'tolerance' must be a finite number"),
    ],
)
def test_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        tps_correspondence(*args, **kwargs)

"""Thin-plate spline solve and grid: against scipy's RBFInterpolator (the standard spline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refcolor.ops import tps_grid, tps_solve, tps_transform_points
from tests.helpers import random_tps_points

scipy_interpolate = pytest.importorskip("scipy.interpolate")


@pytest.mark.parametrize("K", [4, 9, 16, 25, 36, 64])
@pytest.mark.parametrize("size", [(37, 53), (20, 11)])
def test_grid_matches_scipy_thin_plate_spline(K, size):
    g = torch.Generator().manual_seed(K * 1000 + size[0])
    src, dst = random_tps_points(2, K, generator=g)
    grid = tps_grid(src, dst, size)
    H, W = size
    q = np.stack(np.meshgrid(np.linspace(-1, 1, W), np.linspace(-1, 1, H)), -1).reshape(-1, 2)
    for b in range(2):
        rbf = scipy_interpolate.RBFInterpolator(dst[b].numpy(), src[b].numpy(), kernel="thin_plate_spline", degree=1)
        np.testing.assert_allclose(grid[b].numpy(), rbf(q).reshape(H, W, 2), atol=1e-9)


@pytest.mark.parametrize("K", [3, 16, 64])
def test_spline_interpolates_control_points(K):
    src, dst = random_tps_points(3, K, generator=torch.Generator().manual_seed(K))
    params = tps_solve(src, dst)
    torch.testing.assert_close(tps_transform_points(params, dst, dst), src, atol=1e-10, rtol=0)


def test_identity_spline_is_the_identity():
    _, dst = random_tps_points(2, 9)
    params = tps_solve(dst, dst)
    torch.testing.assert_close(params[:, :9], torch.zeros_like(params[:, :9]), atol=1e-13, rtol=0)
    grid = tps_grid(dst, dst, (7, 5))
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, 7, dtype=torch.float64), torch.linspace(-1, 1, 5, dtype=torch.float64), indexing="ij"
    )
    torch.testing.assert_close(grid, torch.stack([xs, ys], -1).expand(2, -1, -1, -1), atol=1e-13, rtol=0)


def test_float32_points_give_float32_grid_and_solve_in_float64():
    src, dst = random_tps_points(1, 8, dtype=torch.float32)
    assert tps_solve(src, dst).dtype == torch.float64
    assert tps_grid(src, dst, (4, 4)).dtype == torch.float32


def test_solve_is_differentiable_in_float64():
    src, dst = random_tps_points(1, 6)
    src.requires_grad_()
    dst.requires_grad_()
    q = torch.rand(1, 5, 2, dtype=torch.float64) * 2 - 1
    assert torch.autograd.gradcheck(lambda s, d: tps_transform_points(tps_solve(s, d), d, q), (src, dst))


def test_degenerate_control_points_are_rejected_or_regularised():
    collinear = torch.tensor([[[-1.0, -1.0], [0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]])
    with pytest.raises(ValueError, match="collinear"):
        tps_solve(collinear, collinear)
    with pytest.raises(ValueError, match="collinear"):
        tps_solve(collinear, collinear, regularization=0.1)
    dup = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    src = dup + torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [-0.1, 0.0]]])
    with pytest.raises(ValueError, match="duplicate control points 1 and 3"):
        tps_solve(src, dup)
    params = tps_solve(src, dup, regularization=1e-3)
    assert torch.isfinite(params).all()


@pytest.mark.parametrize(
    "src, dst, words",
    [
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), ["K >= 3", "K = 2"]),
        (torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), ["'src_points'", "(B, K, 2)", "(1, 4, 3)"]),
        (torch.zeros(4, 2), torch.zeros(4, 2), ["'src_points'", "(B, K, 2)", "(4, 2)"]),
        (torch.rand(1, 4, 2), torch.rand(2, 4, 2), ["same shape", "(1, 4, 2)", "(2, 4, 2)"]),
        (torch.tensor([[[0.0, float("nan")], [1, 0], [0, 1]]]), torch.rand(1, 3, 2), ["'src_points'", "NaN"]),
        (torch.rand(1, 3, 2), torch.tensor([[[0.0, float("inf")], [1, 0], [0, 1]]]), ["'dst_points'", "infinite"]),
        (torch.zeros(1, 4, 2, dtype=torch.int64), torch.zeros(1, 4, 2), ["'src_points'", "floating-point", "int64"]),
    ],
    ids=["k_lt_3", "last_dim", "rank", "batch_mismatch", "nan", "inf", "integer"],
)
def test_bad_points(src, dst, words):
    with pytest.raises((ValueError, TypeError)) as info:
        tps_solve(src, dst)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_bad_size():
    src, dst = random_tps_points(1, 4)
    for size in [(0, 4), (4,), "44", (4.0, 4)]:
        with pytest.raises(ValueError, match="'size'"):
            tps_grid(src, dst, size)

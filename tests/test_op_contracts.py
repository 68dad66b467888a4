"""Contracts of the ops and nn modules that the mutation run (scripts/mutation_score.py) found
untested: one-line errors that name the op, the argument, the expected layout and what was given;
scale's type check; the default backend of tps_warp_from_params; a one-segment HintGenerator."""

from __future__ import annotations

import re

import pytest
import torch

from refcolor.nn import SCFT, HintGenerator, RandomTPS
from refcolor.ops import (
    scft_attention,
    segment_hint_colors,
    tps_solve,
    tps_warp,
    tps_warp_from_params,
    tps_warp_reference,
)

Q, K, V = torch.rand(1, 4, 3), torch.rand(1, 5, 3), torch.rand(1, 5, 2)
S, Y = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
SRC = torch.tensor([[[-0.9, -1.0], [1.0, -0.8], [-1.0, 1.0], [0.9, 1.0]]], dtype=torch.float64)
DST = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
IMAGE = torch.rand(1, 1, 5, 5)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: scft_attention(Q, K, V, scale=True),
            ValueError,
            "scft_attention: argument 'scale' must be a finite real number or None, got True",
        ),
        (
            lambda: scft_attention(Q, K, V, scale="0.5"),
            ValueError,
            "scft_attention: argument 'scale' must be a finite real number or None, got '0.5'",
        ),
        (
            lambda: scft_attention(Q, K.reshape(1, 15), V),
            ValueError,
            "scft_attention: argument 'k' must have shape (B, M, d) (3 dims), got (1, 15)",
        ),
        (
            lambda: scft_attention(Q, K, V[:, :4]),
            ValueError,
            "scft_attention: argument 'v' must have shape (B, M, dv) = (1, 5, dv) to match 'k' (1, 5, 3), "
            "got (1, 4, 2)",
        ),
        (
            lambda: scft_attention(Q, K, V, torch.rand(4, 2)),
            ValueError,
            "scft_attention: argument 'residual' must have shape (B, N, dv) (3 dims), got (4, 2)",
        ),
        (
            lambda: scft_attention(Q, K, V, torch.rand(1, 4, 3)),
            ValueError,
            "scft_attention: argument 'residual' must have shape (B, N, dv) = (1, 4, 2)",
        ),
        (
            lambda: scft_attention(Q[:, :0], K, V),
            ValueError,
            "scft_attention: argument 'q' (B, N, d) must not be empty, got shape (1, 0, 3)",
        ),
        (
            lambda: scft_attention(Q, K[:, :0], V[:, :0]),
            ValueError,
            "scft_attention: argument 'k' (B, M, d) must not be empty, got shape (1, 0, 3)",
        ),
        (
            lambda: scft_attention(Q, K, V[:, :, :0]),
            ValueError,
            "scft_attention: argument 'v' (B, M, dv) must not be empty, got shape (1, 5, 0)",
        ),
        (
            lambda: segment_hint_colors(S, Y, "2"),
            TypeError,
            "segment_hint_colors: argument 'num_hints' must be an int, a sequence of ints or an integer tensor, "
            "got str",
        ),
        (
            lambda: segment_hint_colors(S[:, :, :0], Y[:, :, :0], 2),
            ValueError,
            "segment_hint_colors: argument 'segments' (B, Nc, H, W) must not be empty",
        ),
        (
            lambda: tps_solve(SRC, DST.reshape(1, 8)),
            ValueError,
            "tps_solve: argument 'dst_points' must have shape (B, K, 2) (3 dims), got (1, 8)",
        ),
        (
            lambda: tps_solve(SRC.reshape(1, 8), DST),
            ValueError,
            "tps_solve: argument 'src_points' must have shape (B, K, 2) (3 dims), got (1, 8)",
        ),
        (
            lambda: tps_warp(IMAGE[:, :, :0], SRC, DST),
            ValueError,
            "tps_warp: argument 'image' (B, C, H, W) must not be empty, got shape (1, 1, 0, 5)",
        ),
        (
            lambda: tps_warp(IMAGE[0], SRC, DST),
            ValueError,
            "tps_warp: argument 'image' must have shape (B, C, H, W) (4 dims), got (1, 5, 5)",
        ),
        (
            lambda: SCFT(4)(torch.rand(1, 4, 2, 2), torch.rand(1, 4, 2)),
            ValueError,
            "SCFT: argument 'reference_features' must have shape (B, dim, h, w) (4 dims), got (1, 4, 2)",
        ),
        (
            lambda: SCFT(4)(torch.ones(1, 4, 2, 2, dtype=torch.int64), torch.rand(1, 4, 2, 2)),
            TypeError,
            "SCFT: argument 'sketch_features' must be a floating-point tensor, got dtype int64",
        ),
        (
            lambda: RandomTPS()(torch.rand(0, 3, 4, 4)),
            ValueError,
            "RandomTPS: argument 'images' (B, C, H, W) must not be empty, got shape (0, 3, 4, 4)",
        ),
        (lambda: RandomTPS().manual_seed("3"), TypeError, "RandomTPS: argument 'seed' must be an int, got str"),
    ],
)
def test_errors_name_the_op_the_argument_and_the_values(call, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tps_warp_from_params_default_backend_matches_the_reference(dtype):
    params = tps_solve(SRC, DST)
    image = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    params, dst = params.expand(2, -1, -1), DST.expand(2, -1, -1)
    expected = tps_warp_reference(image.double(), params, dst).to(dtype)
    torch.testing.assert_close(tps_warp_from_params(image, params, dst), expected, atol=1e-5, rtol=1e-5)


def test_hint_generator_with_one_segment():
    """Nc = 1 is a valid (if coarse) model: the whole image is one region."""
    gen = HintGenerator(num_segments=1).eval()
    segments = torch.ones(2, 1, 3, 3)
    image = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    out = gen(segments, image, num_hints=[1, 0])
    torch.testing.assert_close(out[0, :3], image[0].mean(dim=(1, 2), keepdim=True).expand(3, 3, 3))
    assert torch.equal(out[1], torch.zeros(4, 3, 3)) and torch.equal(out[0, 3], torch.ones(3, 3))
    with pytest.raises(ValueError, match="num_segments must be >= 1, got 0"):
        HintGenerator(num_segments=0)

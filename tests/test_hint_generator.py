"""HintGenerator: the Eq. 3 sampler, training (ground-truth means) and inference (user colours)."""

from __future__ import annotations

import math

import pytest
import torch

from refcolor.nn import HintGenerator, num_hints_pmf
from tests.helpers import make_image, make_segments

# Chi-square critical value for 30 degrees of freedom at significance 0.001.
CHI2_30_DOF_P001 = 59.703


def test_pmf_matches_eq3_and_sums_to_one():
    pmf = num_hints_pmf(30, 0.125)
    assert pmf.shape == (31,)
    torch.testing.assert_close(pmf.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert pmf[0] == pytest.approx(0.125)
    assert pmf[5] == pytest.approx(0.875**5 * 0.125)
    assert pmf[30] == pytest.approx(0.875**30)


def test_sampler_follows_eq3_chi_square():
    gen = HintGenerator(num_segments=30, stop_prob=0.125)
    n = 200_000
    samples = gen.sample_num_hints(n, generator=torch.Generator().manual_seed(1234))
    assert samples.dtype == torch.int64 and samples.min() >= 0 and samples.max() <= 30
    observed = torch.bincount(samples, minlength=31).double()
    expected = num_hints_pmf(30, 0.125) * n
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_30_DOF_P001, f"chi-square {chi2:.1f}"


def test_sampler_edge_probabilities_and_reproducibility():
    assert torch.all(HintGenerator(8, stop_prob=1.0).sample_num_hints(100) == 0)
    assert torch.all(HintGenerator(8, stop_prob=0.0).sample_num_hints(100) == 8)
    gen = HintGenerator(30)
    a = gen.sample_num_hints(64, generator=torch.Generator().manual_seed(7))
    b = gen.sample_num_hints(64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def explicit_hints(S, Y, num_hints):
    """Eq. 4-8 with loops over samples and segments, in float64: the mean colour of each of the first
    Nh segments (0 for a segment of total weight < 1) painted with its weights, and their mask."""
    B, Nc, H, W = S.shape
    S, Y = S.double(), Y.double()
    hints = torch.zeros(B, Y.shape[1], H, W, dtype=torch.float64)
    mask = torch.zeros(B, 1, H, W, dtype=torch.float64)
    for b in range(B):
        for k in range(int(num_hints[b])):
            weight = S[b, k]
            count = float(weight.sum())
            color = [float((weight * Y[b, c]).sum()) / count if count >= 1 else 0.0 for c in range(Y.shape[1])]
            for c in range(Y.shape[1]):
                hints[b, c] += color[c] * weight
            mask[b, 0] += weight
    return hints, mask


@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_training_forward_matches_explicit_eq_4_to_8(kind):
    gen = HintGenerator(num_segments=6, stop_prob=0.3).train()
    S, Y = make_segments(4, 6, 8, 9, kind), make_image(4, 3, 8, 9)
    U = gen(S, Y, generator=torch.Generator().manual_seed(0))
    assert U.shape == (4, 4, 8, 9)
    # Nh replayed from the documented draw: the inverse CDF of Eq. 3 on one float64 uniform per sample.
    u = torch.rand(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    num_hints = [min(6, math.floor(math.log1p(-float(x)) / math.log1p(-0.3))) for x in u]
    assert len(set(num_hints)) > 1  # the seed gives different counts per sample
    hints, mask = explicit_hints(S, Y, num_hints)
    torch.testing.assert_close(U[:, :3].double(), hints, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(U[:, 3:].double(), mask, atol=1e-5, rtol=1e-5)
    # Given counts: the same formula, with every count from 0 to Nc.
    counts = torch.tensor([0, 2, 5, 6])
    U = gen(S, Y, num_hints=counts)
    hints, mask = explicit_hints(S, Y, counts)
    torch.testing.assert_close(U.double(), torch.cat([hints, mask], dim=1), atol=1e-5, rtol=1e-5)


def test_gradients_reach_segments_and_image():
    gen = HintGenerator(num_segments=4)
    S = make_segments(2, 4, 5, 5, "soft").requires_grad_()
    Y = make_image(2, 3, 5, 5).requires_grad_()
    gen(S, Y, num_hints=[2, 4]).square().sum().backward()
    assert S.grad.abs().sum() > 0 and Y.grad.abs().sum() > 0


def test_eval_mode_requires_num_hints():
    gen = HintGenerator(num_segments=4).eval()
    with pytest.raises(ValueError, match="'num_hints' is required"):
        gen(make_segments(1, 4, 3, 3, "onehot"), make_image(1, 3, 3, 3))


def test_inference_with_user_colors():
    gen = HintGenerator(num_segments=5).eval()
    S = make_segments(2, 5, 4, 6, "onehot")
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # first two regions: red, green
    U = gen(S, colors=colors)
    expected_hints = colors[0, :, None, None] * S[:, 0:1] + colors[1, :, None, None] * S[:, 1:2]
    torch.testing.assert_close(U[:, :3], expected_hints)
    torch.testing.assert_close(U[:, 3:], S[:, :2].sum(1, keepdim=True))
    # Per-sample counts stop earlier: sample 1 gets only region 1's colour.
    U = gen(S, colors=colors.expand(2, -1, -1), num_hints=[2, 1])
    torch.testing.assert_close(U[1, :3], colors[0, :, None, None] * S[1, 0:1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="stop_prob"):
        HintGenerator(stop_prob=1.5)
    gen = HintGenerator(num_segments=5)
    S = make_segments(1, 5, 3, 3, "onehot")
    with pytest.raises(ValueError, match="num_segments = 5"):
        gen(make_segments(1, 4, 3, 3, "onehot"), make_image(1, 3, 3, 3))
    with pytest.raises(ValueError, match="exactly one of"):
        gen(S)
    with pytest.raises(ValueError, match="'colors'.*K <= 5"):
        gen(S, colors=torch.rand(1, 6, 3))
    # One-line errors that name the module, the argument, the expected layout and what was given.
    with pytest.raises(ValueError, match=r"^HintGenerator: argument 'segments' must have shape \(B, Nc, H, W\)"):
        gen(S[0], make_image(1, 3, 3, 3))
    with pytest.raises(TypeError, match=r"^HintGenerator: argument 'segments'"):
        gen(S.long(), make_image(1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"^HintGenerator: argument 'colors' must have shape \(B, K, C\) \(3 dims\)"):
        gen(S, colors=torch.rand(1, 2, 3, 1))
    with pytest.raises(TypeError, match=r"^HintGenerator: argument 'colors'"):
        gen(S, colors=torch.ones(1, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^HintGenerator: argument 'num_hints'"):
        gen(S, colors=torch.rand(2, 3), num_hints=[3])

"""scft_triplet_loss against a materialised computation (the full N x M similarity matrix), margin
behaviour, invalid queries, the negative sampling, reproducibility and argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from refcolor.losses import draw_negatives, gram_matrix, scft_triplet_loss, style_loss
from tests.helpers import devices


def materialised_triplet_loss(queries, keys, positive_index, negative_index, valid, margin, scale):
    """Test-only: the loss read off the full similarity matrix S = scale * Q K^T (B, N, M)."""
    similarity = scale * queries.double() @ keys.double().transpose(1, 2)
    s_pos = similarity.gather(2, positive_index.unsqueeze(-1))  # (B, N, 1)
    s_neg = similarity.gather(2, negative_index)  # (B, N, K)
    hinge = (s_neg - s_pos + margin).clamp_min(0)
    weight = valid.double().unsqueeze(-1).expand_as(hinge)
    return (hinge * weight).sum() / weight.sum().clamp_min(1)


def documented_negatives(positive_index, num_keys, num_negatives, generator):
    """The documented draw, written out: r uniform in [0, num_keys - 1) (one torch.randint call of
    shape (B, N, num_negatives) on the generator), then shifted past the positive, element by element."""
    B, N = positive_index.shape
    r = torch.randint(0, num_keys - 1, (B, N, num_negatives), generator=generator)
    out = torch.empty_like(r)
    for b in range(B):
        for n in range(N):
            p = int(positive_index[b, n])
            for k in range(num_negatives):
                out[b, n, k] = r[b, n, k] if r[b, n, k] < p else r[b, n, k] + 1
    return out.to(positive_index.device)


def make(B, N, M, dim, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(B, N, dim, generator=g).to(device)
    keys = torch.randn(B, M, dim, generator=g).to(device)
    positive = torch.randint(0, M, (B, N), generator=g).to(device)
    valid = (torch.rand(B, N, generator=g) > 0.3).to(device)
    return queries, keys, positive, valid


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("num_negatives", [1, 4])
@pytest.mark.parametrize("margin", [0.0, 1.0, 12.0])
def test_matches_materialised_computation(margin, num_negatives, device):
    queries, keys, positive, valid = make(3, 20, 17, 8, seed=num_negatives, device=device)
    queries, keys = 3 * queries.requires_grad_(), keys.requires_grad_()
    loss = scft_triplet_loss(
        queries,
        keys,
        positive,
        valid,
        margin=margin,
        num_negatives=num_negatives,
        generator=torch.Generator().manual_seed(5),
    )
    negatives = documented_negatives(positive, 17, num_negatives, torch.Generator().manual_seed(5))
    expected = materialised_triplet_loss(queries, keys, positive, negatives, valid, margin, 1 / math.sqrt(8))
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(loss, [queries, keys])
    expected_grads = torch.autograd.grad(expected, [queries, keys])
    for a, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_two_keys_leave_one_negative_and_scale():
    """M = 2: the negative is the other key, so the loss is deterministic; explicit scale."""
    queries, keys, positive, valid = make(2, 6, 2, 4, seed=1)
    expected = materialised_triplet_loss(queries, keys, positive, (1 - positive).unsqueeze(-1), valid, 0.5, 0.1)
    for seed in range(3):
        loss = scft_triplet_loss(
            queries,
            keys,
            positive,
            valid,
            margin=0.5,
            scale=0.1,
            num_negatives=3,
            generator=torch.Generator().manual_seed(seed),
        )
        torch.testing.assert_close(loss.double(), expected)


def test_margin_behaviour():
    queries, keys, positive, _ = make(2, 10, 9, 6, seed=2)
    # All similarities 0 (zero queries): every hinge equals the margin.
    zero = torch.zeros_like(queries)
    torch.testing.assert_close(scft_triplet_loss(zero, keys, positive, margin=12.0), torch.tensor(12.0))
    # Queries equal to a scaled copy of their positive key, keys orthogonal: s_pos - s_neg = 100 > margin.
    keys = torch.eye(9).expand(2, 9, 9)[..., :9].contiguous()
    queries = (100 * 3 * keys.gather(1, positive.unsqueeze(-1).expand(-1, -1, 9))).requires_grad_()
    loss = scft_triplet_loss(queries, keys, positive, margin=12.0)
    assert loss.item() == 0.0
    assert torch.all(torch.autograd.grad(loss, queries)[0] == 0)
    # The same queries with a margin beyond the gap: every hinge is active, the loss is margin - gap.
    torch.testing.assert_close(scft_triplet_loss(queries, keys, positive, margin=150.0), torch.tensor(50.0))


def test_invalid_queries_are_ignored():
    queries, keys, positive, valid = make(2, 12, 10, 5, seed=3)
    loss = scft_triplet_loss(queries, keys, positive, valid, generator=torch.Generator().manual_seed(1))
    scrambled = torch.where(valid.unsqueeze(-1), queries, 1000 * torch.randn_like(queries))
    again = scft_triplet_loss(scrambled, keys, positive, valid, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, again)
    none_valid = scft_triplet_loss(queries.requires_grad_(), keys, positive, torch.zeros_like(valid))
    assert none_valid.item() == 0.0
    assert torch.all(torch.autograd.grad(none_valid, queries)[0] == 0)
    # valid=None: every query counts.
    all_valid = torch.ones_like(valid)
    g = torch.Generator().manual_seed(4)
    torch.testing.assert_close(
        scft_triplet_loss(queries, keys, positive, generator=g),
        scft_triplet_loss(queries, keys, positive, all_valid, generator=torch.Generator().manual_seed(4)),
    )


def test_negatives_uniform_over_other_positions_and_reproducible():
    positive = torch.tensor([[0, 3, 6], [2, 2, 5]])
    negatives = draw_negatives(positive, 7, 2000, torch.Generator().manual_seed(0))
    assert negatives.shape == (2, 3, 2000)
    assert torch.all(negatives != positive.unsqueeze(-1))
    assert negatives.min() >= 0 and negatives.max() <= 6
    counts = torch.stack([torch.bincount(row, minlength=7) for row in negatives.reshape(6, -1)])
    for row, p in zip(counts, positive.flatten(), strict=True):
        others = torch.cat([row[:p], row[p + 1 :]]).double()
        assert others.min() > 0.8 * 2000 / 6 and others.max() < 1.2 * 2000 / 6
    assert torch.equal(negatives, documented_negatives(positive, 7, 2000, torch.Generator().manual_seed(0)))
    queries, keys, index, valid = make(2, 15, 11, 4, seed=6)
    losses = [
        scft_triplet_loss(queries, keys, index, valid, generator=torch.Generator().manual_seed(seed))
        for seed in (7, 7, 8)
    ]
    assert losses[0] == losses[1] and losses[0] != losses[2]


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"keys": lambda k: k[..., :3]}, ValueError, ["'keys'", "(2, M, 4)", "(2, 5, 3)"]),
        ({"keys": lambda k: k[:, :1]}, ValueError, ["M >= 2", "M = 1"]),
        ({"positive_index": lambda p: p + 5}, ValueError, ["'positive_index'", "[0, 4]"]),
        ({"positive_index": lambda p: p.int()}, TypeError, ["'positive_index'", "int64"]),
        ({"positive_index": lambda p: p[:, :2]}, ValueError, ["'positive_index'", "(2, 6)", "(2, 2)"]),
        ({"valid": lambda v: v.float()}, TypeError, ["'valid'", "bool"]),
        ({"margin": float("inf")}, ValueError, ["'margin'"]),
        ({"num_negatives": 0}, ValueError, ["'num_negatives'"]),
    ],
    ids=["dim", "one_key", "index_range", "index_dtype", "index_shape", "valid_dtype", "margin", "negatives"],
)
def test_bad_inputs(change, error, words):
    queries, keys, positive, valid = make(2, 6, 5, 4)
    args = {"queries": queries, "keys": keys, "positive_index": positive, "valid": valid}
    kwargs = {}
    for name, value in change.items():
        if name in args:
            args[name] = value(args[name])
        else:
            kwargs[name] = value
    with pytest.raises(error) as info:
        scft_triplet_loss(**args, **kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_gram_matrix_direct_sum_in_half_precision_and_under_autocast():
    """F F^T / (C H W) from a direct float64 sum; half inputs and autocast still sum in float32,
    with float32-level error (summed in bfloat16, 4096 products per entry are off by ~3e-3 relative)."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.einsum("bihw,bjhw->bij", x, x) / (3 * 64 * 64)
    half = x.to(torch.bfloat16)
    expected_half = torch.einsum("bihw,bjhw->bij", half.double(), half.double()) / (3 * 64 * 64)
    torch.testing.assert_close(gram_matrix(x), expected, rtol=1e-12, atol=0)
    got = gram_matrix(half)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected_half, rtol=1e-6, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gram_matrix(x.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=0)


def test_style_loss_direct():
    """Sum over layers of mean |G(a) - G(b)| with G from a direct einsum."""
    g = torch.Generator().manual_seed(1)
    a = {"relu1_1": torch.rand(2, 4, 6, 5, generator=g), "relu2_1": torch.rand(2, 8, 3, 3, generator=g)}
    b = {name: torch.rand(t.shape, generator=g) for name, t in a.items()}
    expected = 0.0
    for name in a:
        C, H, W = a[name].shape[1:]
        ga = torch.einsum("bihw,bjhw->bij", a[name].double(), a[name].double()) / (C * H * W)
        gb = torch.einsum("bihw,bjhw->bij", b[name].double(), b[name].double()) / (C * H * W)
        expected += (ga - gb).abs().mean().item()
    assert style_loss(a, b, ("relu1_1", "relu2_1")).item() == pytest.approx(expected, rel=1e-5)

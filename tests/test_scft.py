"""refcolor.nn.SCFT: shapes, the formula written out, the triplet and attention outputs, backends,
gradients to the projections, and an end-to-end triplet loss on a RandomTPS correspondence."""

from __future__ import annotations

import math

import pytest
import torch

from refcolor.losses import scft_triplet_loss
from refcolor.nn.random_tps import RandomTPS
from refcolor.nn.scft import SCFT, SCFTOutput
from refcolor.ops.tps_correspondence import tps_correspondence
from tests.helpers import rel_err, usable


def features(B, dim, h, w, seed):
    return torch.randn(B, dim, h, w, generator=torch.Generator().manual_seed(seed))


def by_hand(module: SCFT, sketch, reference):
    """v* = v_s + softmax(Q K^T / sqrt(dim)) V, in float64, one sample at a time."""
    outs = []
    Wq, Wk, Wv = (m.weight.double() for m in (module.to_query, module.to_key, module.to_value))
    for s, r in zip(sketch.double(), reference.double(), strict=True):
        vs, vr = s.flatten(1).T, r.flatten(1).T  # (N, dim), (M, dim)
        attention = torch.softmax((vs @ Wq.T) @ (vr @ Wk.T).T / math.sqrt(module.dim), dim=-1)
        outs.append((vs + attention @ (vr @ Wv.T)).T.reshape(s.shape))
    return torch.stack(outs)


def test_shapes_and_formula():
    torch.manual_seed(0)
    module = SCFT(24)
    sketch, reference = features(2, 24, 5, 6, 1), features(2, 24, 4, 7, 2)
    out = module(sketch, reference)
    assert out.shape == (2, 24, 5, 6) and out.dtype == torch.float32
    assert rel_err(out, by_hand(module, sketch, reference)) <= 1e-5
    assert not any(m.bias is not None for m in (module.to_query, module.to_key, module.to_value))
    assert module.scale == 1 / math.sqrt(24)


def test_triplet_and_attention_outputs():
    torch.manual_seed(0)
    module = SCFT(16)
    sketch, reference = features(2, 16, 3, 5, 3), features(2, 16, 4, 4, 4)
    result = module(sketch, reference, return_triplet=True, return_attention=True)
    assert isinstance(result, SCFTOutput)
    vs, vr = sketch.flatten(2).transpose(1, 2), reference.flatten(2).transpose(1, 2)
    torch.testing.assert_close(result.queries, module.to_query(vs))
    torch.testing.assert_close(result.keys, module.to_key(vr))
    assert result.attention.shape == (2, 15, 16)
    torch.testing.assert_close(result.attention.sum(-1), torch.ones(2, 15))
    torch.testing.assert_close(result.features, module(sketch, reference))
    only_triplet = module(sketch, reference, return_triplet=True)
    assert only_triplet.attention is None and only_triplet.queries.shape == (2, 15, 16)
    only_attention = module(sketch, reference, return_attention=True)
    assert only_attention.queries is None and only_attention.keys is None


@pytest.mark.parametrize("backend", ["reference", "sdpa", "triton"])
def test_backends_agree_and_gradients_reach_the_projections(backend):
    if not usable(backend, "cpu"):
        pytest.skip(f"{backend} not usable on cpu")
    torch.manual_seed(0)
    module = SCFT(32, backend=backend)
    sketch = features(2, 32, 4, 5, 5).requires_grad_()
    reference = features(2, 32, 3, 6, 6).requires_grad_()
    out = module(sketch, reference)
    expected = module(sketch, reference, backend="reference")
    assert rel_err(out, expected) <= 1e-5
    grads = torch.autograd.grad(out.square().sum(), [sketch, reference, *module.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [sketch, reference, *module.parameters()])
    for a, e in zip(grads, expected_grads, strict=True):
        assert rel_err(a, e) <= 1e-4


def test_triplet_loss_end_to_end_on_a_random_tps_correspondence():
    """RandomTPS warp -> tps_correspondence -> SCFT queries/keys -> loss, differentiable in W_q, W_k."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    _, grid = RandomTPS(jitter=0.1, seed=3)(images)
    index, valid = tps_correspondence(grid, (4, 4), (4, 4))
    module = SCFT(16)
    result = module(features(2, 16, 4, 4, 7), features(2, 16, 4, 4, 8), return_triplet=True)
    loss = scft_triplet_loss(result.queries, result.keys, index, valid, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and loss.item() > 0
    grad_q, grad_k, grad_v = torch.autograd.grad(
        loss, [module.to_query.weight, module.to_key.weight, module.to_value.weight], allow_unused=True
    )
    assert grad_q.abs().sum() > 0 and grad_k.abs().sum() > 0 and grad_v is None


@pytest.mark.parametrize(
    "sketch_shape, reference_shape, words",
    [
        ((2, 8, 4, 4), (2, 16, 4, 4), ["'sketch_features'", "dim = 16", "(2, 8, 4, 4)"]),
        ((2, 16, 4, 4), (3, 16, 4, 4), ["'reference_features'", "batch", "(3, 16, 4, 4)"]),
        ((2, 16, 16), (2, 16, 4, 4), ["'sketch_features'", "(B, dim, h, w)", "(2, 16, 16)"]),
    ],
    ids=["channels", "batch", "rank"],
)
def test_bad_inputs(sketch_shape, reference_shape, words):
    module = SCFT(16)
    with pytest.raises(ValueError) as info:
        module(torch.zeros(sketch_shape), torch.zeros(reference_shape))
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
    with pytest.raises(ValueError, match="'dim'"):
        SCFT(0)


def test_attention_map_and_invariance_to_the_order_of_reference_cells():
    """The returned attention is softmax(Q K^T / sqrt(dim)) written out; permuting the reference
    cells (a set to SCFT) permutes the attention's columns and leaves v* unchanged."""
    torch.manual_seed(3)
    module = SCFT(12)
    sketch, reference = features(2, 12, 3, 4, 5), features(2, 12, 3, 5, 6)
    result = module(sketch, reference, return_attention=True)
    Wq, Wk = module.to_query.weight.double(), module.to_key.weight.double()
    for b in range(2):
        q = sketch[b].double().flatten(1).T @ Wq.T
        k = reference[b].double().flatten(1).T @ Wk.T
        expected = torch.softmax(q @ k.T / math.sqrt(12), dim=-1)
        torch.testing.assert_close(result.attention[b].double(), expected, atol=1e-6, rtol=1e-5)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    shuffled = reference.flatten(2)[:, :, perm].reshape(2, 12, 5, 3)  # another (h', w') too
    again = module(sketch, shuffled, return_attention=True)
    torch.testing.assert_close(again.features, result.features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again.attention, result.attention[:, :, perm], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_carry_rides_the_same_attention_with_gradients(backend):
    """`carry` comes back as P @ carry (no residual), and its gradient reaches W_q and W_k on every
    backend (the returned attention map is detached on the compiled ones, the carry is not)."""
    torch.manual_seed(0)
    scft = SCFT(16, backend=backend).double()
    v_s = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    v_r = torch.randn(2, 16, 2, 5, dtype=torch.float64)
    carry = torch.randn(2, 10, 7, dtype=torch.float64, requires_grad=True)
    out = scft(v_s, v_r, carry=carry)
    plain, attention = scft(v_s, v_r, return_attention=True, backend="reference")[::3]
    torch.testing.assert_close(out.features, plain)
    torch.testing.assert_close(out.carried, attention @ carry)
    out.carried.square().sum().backward()
    assert scft.to_query.weight.grad.abs().sum() > 0 and scft.to_key.weight.grad.abs().sum() > 0
    assert scft.to_value.weight.grad is None or scft.to_value.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match=r"argument 'carry' must have shape \(B, h' w', c\) = \(2, 10, c\)"):
        scft(v_s, v_r, carry=carry[:, :9])

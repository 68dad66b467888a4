"""Training losses of refcolor.

scft_triplet_loss: SCFT's similarity-based triplet loss (Lee et al., CVPR 2020, Eq. 6). The
augmented-self reference is the target warped by a known spline, so every sketch (query) cell has a
known reference (key) cell: refcolor.ops.tps_correspondence(grid, query_size, key_size) gives that
index and whether it exists. The loss pulls each query towards its corresponding key and pushes it
away from other keys of the same reference:

    L_tr = mean over valid queries i and negatives n of max(0, s(q_i, k_n) - s(q_i, k_p(i)) + margin),
    s(a, b) = scale * a . b  (scale = 1 / sqrt(dim): the attention's scaled dot product).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from refcolor.ops import _validation as check

OP = "scft_triplet_loss"


def draw_negatives(
    positive_index: Tensor, num_keys: int, num_negatives: int, generator: torch.Generator | None = None
) -> Tensor:
    """Negative key indices (B, N, num_negatives), each uniform over the num_keys - 1 positions of
    the same reference other than the query's positive (independent draws, with replacement): a
    draw r in [0, num_keys - 1) is shifted past the positive (r >= p -> r + 1). Drawn on the
    generator's device (the CPU by default when one is given) and moved to positive_index's."""
    B, N = positive_index.shape
    device = generator.device if generator is not None else positive_index.device
    r = torch.randint(0, num_keys - 1, (B, N, num_negatives), generator=generator, device=device)
    r = r.to(positive_index.device)
    return r + (r >= positive_index.unsqueeze(-1)).long()


def _check_inputs(queries, keys, positive_index, valid, margin, num_negatives) -> None:
    check.check_float_tensor(OP, "queries", queries, 3, "(B, N, dim)")
    check.check_float_tensor(OP, "keys", keys, 3, "(B, M, dim)")
    check.check_same_device(OP, "keys", keys, "queries", queries)
    check.check_same_dtype(OP, "keys", keys, "queries", queries)
    check.check_dims_match(OP, "keys", keys, "(B, M, dim)", "queries", queries, dims=(0, 2))
    check.check_nonempty(OP, "queries", queries, "(B, N, dim)")
    B, N, _ = queries.shape
    M = keys.shape[1]
    if M < 2:
        raise ValueError(f"{OP}: argument 'keys' (B, M, dim) needs M >= 2 (a positive and a negative), got M = {M}")
    for name, value, dtypes in (("positive_index", positive_index, (torch.int64,)), ("valid", valid, (torch.bool,))):
        if value is None and name == "valid":
            continue
        if not isinstance(value, Tensor) or value.dtype not in dtypes:
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{OP}: argument '{name}' must be a {dtypes[0]} tensor (B, N), got {what}")
        if value.shape != (B, N):
            raise ValueError(f"{OP}: argument '{name}' must have shape (B, N) = {(B, N)}, got {tuple(value.shape)}")
        check.check_same_device(OP, name, value, "queries", queries)
    # Reading the values synchronises with the GPU; skipped while torch.compile traces.
    if not torch.compiler.is_compiling():
        lo, hi = int(positive_index.min()), int(positive_index.max())
        if lo < 0 or hi >= M:
            raise ValueError(f"{OP}: argument 'positive_index' must be in [0, {M - 1}], got values in [{lo}, {hi}]")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise ValueError(f"{OP}: argument 'margin' must be a finite real number, got {margin!r}")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"{OP}: argument 'num_negatives' must be a positive int, got {num_negatives!r}")


def _gather_rows(keys: Tensor, index: Tensor) -> Tensor:
    """keys (B, M, dim), index (B, ...) -> (B, ..., dim): keys[b, index[b, ...]]."""
    B, _, dim = keys.shape
    flat = index.reshape(B, -1, 1).expand(-1, -1, dim)
    return keys.gather(1, flat).reshape(*index.shape, dim)


def scft_triplet_loss(
    queries: Tensor,
    keys: Tensor,
    positive_index: Tensor,
    valid: Tensor | None = None,
    *,
    margin: float = 12.0,
    num_negatives: int = 1,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> Tensor:
    """SCFT's similarity-based triplet loss from gathered rows (the N x M similarity matrix is
    never formed: memory O(B N num_negatives dim)).

    Args:
        queries: (B, N, dim) projected sketch features (SCFT's return_triplet output).
        keys: (B, M, dim) projected reference features, M >= 2; same dtype and device.
        positive_index: (B, N) int64 in [0, M): each query's corresponding key (tps_correspondence).
        valid: (B, N) bool or None (all valid): queries without a correspondence are left out.
        margin: the hinge margin (12 in the re-implementations of the paper).
        num_negatives: negatives per query. Each is drawn uniformly, with replacement, from the
            same reference's M - 1 positions other than the positive (draw_negatives); pass a
            seeded `generator` for reproducible draws.
        scale: similarity scale, default 1 / sqrt(dim) as in the attention.

    Returns: a scalar, the hinge averaged over valid queries and their negatives (0 if no query
    is valid), in float32 (float64 for float64 inputs).
    """
    _check_inputs(queries, keys, positive_index, valid, margin, num_negatives)
    dim = queries.shape[-1]
    scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
    compute = torch.float64 if queries.dtype == torch.float64 else torch.float32
    q = queries.to(compute)
    negative_index = draw_negatives(positive_index, keys.shape[1], num_negatives, generator)
    positive = _gather_rows(keys, positive_index).to(compute)  # (B, N, dim)
    negatives = _gather_rows(keys, negative_index).to(compute)  # (B, N, K, dim)
    s_pos = scale * (q * positive).sum(-1)  # (B, N)
    s_neg = scale * torch.einsum("bnd,bnkd->bnk", q, negatives)  # (B, N, K)
    hinge = (s_neg - s_pos.unsqueeze(-1) + margin).clamp_min(0)
    if valid is None:
        return hinge.mean()
    weight = valid.to(compute).unsqueeze(-1)
    return (hinge * weight).sum() / (weight.sum() * num_negatives).clamp_min(1)


__all__ = ["draw_negatives", "scft_triplet_loss"]

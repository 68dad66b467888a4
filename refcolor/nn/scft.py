"""SCFT: the spatially corresponding feature transfer module of Lee et al., "Reference-Based Sketch
Image Colorization using Augmented-Self Reference and Dense Semantic Correspondence", CVPR 2020.

Every sketch feature cell v_s (a row of the (B, N, dim) flattened sketch map) gathers the reference
cells v_r it corresponds to:

    v* = v_s + softmax(Q K^T / sqrt(dim)) V,   Q = v_s W_q,  K = v_r W_k,  V = v_r W_v,

with bias-free dim x dim projections. The attention runs in refcolor.ops.scft_attention (the
residual add included). The queries and keys are also what the similarity-based triplet loss
supervises (refcolor.losses.scft_triplet_loss), so the module can return them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from refcolor.ops import _validation as check
from refcolor.ops.scft_attention import scft_attention

OP = "SCFT"


class SCFTOutput(NamedTuple):
    """What SCFT.forward returns when asked for more than the features."""

    features: Tensor  # (B, dim, h, w): v* as a map
    queries: Tensor | None  # (B, N = h w, dim), row-major cells; with return_triplet
    keys: Tensor | None  # (B, M = h' w', dim); with return_triplet
    attention: Tensor | None  # (B, N, M), rows summing to 1; with return_attention
    carried: Tensor | None = None  # (B, N, c): softmax(Q K^T / sqrt(dim)) carry; with `carry`


class SCFT(nn.Module):
    """Spatially corresponding feature transfer (Lee et al., CVPR 2020).

    Args:
        dim: channels of both feature maps (992 in the paper: all encoder levels concatenated).
        backend: default backend of refcolor.ops.scft_attention ("auto", "reference", "sdpa",
            "triton"); forward(backend=...) overrides it per call.

    forward(sketch_features (B, dim, h, w), reference_features (B, dim, h', w'), *,
            return_triplet=False, return_attention=False, backend=None):
        -> v* (B, dim, h, w), or an SCFTOutput when return_triplet or return_attention is set:
        return_triplet adds the projected queries (B, h w, dim) and keys (B, h' w', dim) for
        refcolor.losses.scft_triplet_loss (cells flattened row-major, as tps_correspondence
        indexes them); return_attention adds the (B, h w, h' w') attention map (computed by the
        materialising reference path).
        carry (B, h' w', c), optional: more per-reference-cell values that the same attention
        moves to the sketch cells, returned as `carried` (B, h w, c) with no residual. They ride in
        the fused op's value matrix beside V, so the gradient reaches Q and K through them on every
        backend (a returned attention map is detached on all but the reference backend).
    """

    def __init__(self, dim: int, *, backend: str = "auto"):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{OP}: argument 'dim' must be a positive int, got {dim!r}")
        self.dim = dim
        self.backend = backend
        self.scale = 1.0 / math.sqrt(dim)
        self.to_query = nn.Linear(dim, dim, bias=False)  # W_q
        self.to_key = nn.Linear(dim, dim, bias=False)  # W_k
        self.to_value = nn.Linear(dim, dim, bias=False)  # W_v

    def extra_repr(self) -> str:
        return f"dim={self.dim}, backend={self.backend!r}"

    def _check(self, name: str, features) -> None:
        check.check_float_tensor(OP, name, features, 4, "(B, dim, h, w)")
        if features.shape[1] != self.dim:
            raise ValueError(
                f"{OP}: argument '{name}' must have shape (B, dim, h, w) with dim = {self.dim}, "
                f"got {tuple(features.shape)}"
            )

    def forward(
        self,
        sketch_features: Tensor,
        reference_features: Tensor,
        *,
        return_triplet: bool = False,
        return_attention: bool = False,
        backend: str | None = None,
        carry: Tensor | None = None,
    ):
        self._check("sketch_features", sketch_features)
        self._check("reference_features", reference_features)
        if reference_features.shape[0] != sketch_features.shape[0]:
            raise ValueError(
                f"{OP}: argument 'reference_features' {tuple(reference_features.shape)} must have the batch "
                f"size of 'sketch_features' {tuple(sketch_features.shape)}"
            )
        B, _, h, w = sketch_features.shape
        sketch = sketch_features.flatten(2).transpose(1, 2)  # (B, N, dim)
        reference = reference_features.flatten(2).transpose(1, 2)  # (B, M, dim)
        queries, keys, values = self.to_query(sketch), self.to_key(reference), self.to_value(reference)
        residual = sketch
        if carry is not None:
            check.check_float_tensor(OP, "carry", carry, 3, "(B, h' w', c)")
            if carry.shape[:2] != values.shape[:2]:
                raise ValueError(
                    f"{OP}: argument 'carry' must have shape (B, h' w', c) = ({B}, {values.shape[1]}, c), "
                    f"got {tuple(carry.shape)}"
                )
            values = torch.cat([values, carry.to(values.dtype)], dim=-1)
            residual = torch.cat([sketch, sketch.new_zeros(B, sketch.shape[1], carry.shape[-1])], dim=-1)
        result = scft_attention(
            queries,
            keys,
            values,
            residual,
            scale=self.scale,
            backend=self.backend if backend is None else backend,
            return_attention=return_attention,
        )
        out, attention = result if return_attention else (result, None)
        carried = None
        if carry is not None:
            out, carried = out[..., : self.dim], out[..., self.dim :]
        features = out.transpose(1, 2).reshape(B, self.dim, h, w)
        if not (return_triplet or return_attention or carry is not None):
            return features
        return SCFTOutput(
            features, queries if return_triplet else None, keys if return_triplet else None, attention, carried
        )

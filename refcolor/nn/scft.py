"""SCFT: the spatially corresponding feature transfer module of Lee et al., "Reference-Based Sketch
Image Colorization using Augmented-Self Reference and Dense Semantic Correspondence", CVPR 2020.

Every sketch feature cell v_s (a row of the (B, N, dim) flattened sketch map) gathers the reference
cells v_r it corresponds to:

    v* = v_s + softmax(Q K^T / sqrt(dim)) V,   Q = v_s W_q,  K = v_r W_k,  V = v_r W_v,

with bias-free dim x dim projections. The attention runs in refcolor.ops.scft_attention (the
residual add included). The queries and keys are also what the similarity-based triplet loss
supervises (refcolor.losses.scft_triplet_loss), so the module can return them.

With `match_channels` c > 0 (issue 27), the queries and keys are computed from more than the
features: Q = [v_s; m_s] W_q and K = [v_r; m_r] W_k with (dim + c) x (dim + c) projections (and the
logit scale 1 / sqrt(dim + c)), where m_s, m_r are c-channel "match" maps given to forward
(SCFTColorizer passes frozen ImageNet features of the sketch and of a sketch extracted from the
reference). The projections keep all dim + c dimensions, so the match maps' dot products survive
them exactly when W_q and W_k start block-diagonal; a projection down to dim would mix them with
the learned features and lose part of them (measured: 55% -> 47% within one cell for 424 frozen
channels projected to 120). The values and the residual stay v_r W_v and v_s: the match maps decide
where to look, the learned features what is carried.
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
        match_channels: channels of the extra maps that forward's sketch_match / reference_match
            add to the query and key projections' inputs (module docstring); 0: none (the paper).

    forward(sketch_features (B, dim, h, w), reference_features (B, dim, h', w'), *,
            return_triplet=False, return_attention=False, backend=None):
        -> v* (B, dim, h, w), or an SCFTOutput when return_triplet or return_attention is set:
        return_triplet adds the projected queries (B, h w, dim + c) and keys (B, h' w', dim + c) for
        refcolor.losses.scft_triplet_loss (cells flattened row-major, as tps_correspondence
        indexes them); return_attention adds the (B, h w, h' w') attention map (computed by the
        materialising reference path).
        carry (B, h' w', c), optional: more per-reference-cell values that the same attention
        moves to the sketch cells, returned as `carried` (B, h w, c) with no residual. They ride in
        the fused op's value matrix beside V, so the gradient reaches Q and K through them on every
        backend (a returned attention map is detached on all but the reference backend).
        sketch_match (B, c, h, w), reference_match (B, c, h', w'): the match maps, required exactly
        when match_channels = c > 0.
    """

    def __init__(self, dim: int, *, backend: str = "auto", match_channels: int = 0):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{OP}: argument 'dim' must be a positive int, got {dim!r}")
        if isinstance(match_channels, bool) or not isinstance(match_channels, int) or match_channels < 0:
            raise ValueError(f"{OP}: argument 'match_channels' must be an int >= 0, got {match_channels!r}")
        self.dim = dim
        self.match_channels = match_channels
        self.backend = backend
        self.scale = 1.0 / math.sqrt(dim + match_channels)
        self.to_query = nn.Linear(dim + match_channels, dim + match_channels, bias=False)  # W_q
        self.to_key = nn.Linear(dim + match_channels, dim + match_channels, bias=False)  # W_k
        self.to_value = nn.Linear(dim, dim, bias=False)  # W_v

    def extra_repr(self) -> str:
        extra = f", match_channels={self.match_channels}" if self.match_channels else ""
        return f"dim={self.dim}, backend={self.backend!r}{extra}"

    def _check(self, name: str, features, channels: int | None = None, like: Tensor | None = None) -> None:
        channels = self.dim if channels is None else channels
        what = "dim" if channels == self.dim else "match_channels"
        check.check_float_tensor(OP, name, features, 4, f"(B, {what}, h, w)")
        if features.shape[1] != channels or (like is not None and features.shape[2:] != like.shape[2:]):
            size = "" if like is None else f" and the h, w of {tuple(like.shape[2:])}"
            raise ValueError(
                f"{OP}: argument '{name}' must have shape (B, {what}, h, w) with {what} = {channels}{size}, "
                f"got {tuple(features.shape)}"
            )

    def _with_match(self, name: str, features: Tensor, flat: Tensor, match: Tensor | None) -> Tensor:
        """flat (B, N, dim) -> [flat; match flattened] (B, N, dim + c), the projection's input."""
        if self.match_channels == 0:
            if match is not None:
                raise ValueError(f"{OP}: argument '{name}' must be None when match_channels = 0, got a tensor")
            return flat
        if match is None:
            raise ValueError(f"{OP}: argument '{name}' is required when match_channels = {self.match_channels}")
        self._check(name, match, self.match_channels, like=features)
        return torch.cat([flat, match.flatten(2).transpose(1, 2).to(flat.dtype)], dim=-1)

    def forward(
        self,
        sketch_features: Tensor,
        reference_features: Tensor,
        *,
        return_triplet: bool = False,
        return_attention: bool = False,
        backend: str | None = None,
        carry: Tensor | None = None,
        sketch_match: Tensor | None = None,
        reference_match: Tensor | None = None,
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
        queries = self.to_query(self._with_match("sketch_match", sketch_features, sketch, sketch_match))
        keys = self.to_key(self._with_match("reference_match", reference_features, reference, reference_match))
        values = self.to_value(reference)
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

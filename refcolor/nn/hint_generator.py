"""HintGenerator: GuidingPainter's hint generation h(S, Y, Nh) (Cho et al. 2022, Eq. 2-8)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from refcolor.ops import _validation as check
from refcolor.ops.segment_hint_colors import segment_hint_colors


def num_hints_pmf(num_segments: int, stop_prob: float) -> Tensor:
    """Eq. 3: P(Nh = i) = (1-p)^i p for i < Nc, and (1-p)^Nc for i = Nc. float64 (Nc + 1,)."""
    i = torch.arange(num_segments + 1, dtype=torch.float64)
    pmf = (1 - stop_prob) ** i * stop_prob
    pmf[num_segments] = (1 - stop_prob) ** num_segments
    return pmf


class HintGenerator(nn.Module):
    """Turns segments into the colour-hint input U = [C, M] (B, C+1, H, W) of the colorization net.

    Training: Nh is drawn per sample from the bounded geometric distribution of Eq. 3 (a user who
    stops adding hints with probability `stop_prob` at each step), and the hints are the mean
    ground-truth colours of the first Nh segments (refcolor.ops.segment_hint_colors).
    Inference: pass `colors`, the user's colours for the first K segments, instead of an image.
    """

    def __init__(self, num_segments: int = 30, stop_prob: float = 0.125, backend: str = "auto"):
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"HintGenerator: num_segments must be >= 1, got {num_segments}")
        if not 0.0 <= stop_prob <= 1.0:
            raise ValueError(f"HintGenerator: stop_prob must be in [0, 1], got {stop_prob}")
        self.num_segments = num_segments
        self.stop_prob = stop_prob
        self.backend = backend

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, stop_prob={self.stop_prob}, backend={self.backend!r}"

    def sample_num_hints(
        self, batch_size: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Nh per sample from Eq. 3, int64 (batch_size,). Inverse-CDF sampling of a geometric count of
        'continue' steps, capped at Nc: P(Nh >= i) = (1-p)^i for i <= Nc."""
        if self.stop_prob == 0.0:
            counts = torch.full((batch_size,), self.num_segments, dtype=torch.int64)
        else:
            gen_device = generator.device if generator is not None else "cpu"
            u = torch.rand(batch_size, generator=generator, dtype=torch.float64, device=gen_device).cpu()
            log_keep = math.log1p(-self.stop_prob) if self.stop_prob < 1.0 else -math.inf
            counts = torch.floor(torch.log1p(-u) / log_keep).clamp(0, self.num_segments).to(torch.int64)
        return counts.to(device) if device is not None else counts

    def forward(
        self,
        segments: Tensor,
        image: Tensor | None = None,
        *,
        num_hints=None,
        colors: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """-> U = cat([hints, mask], dim=1), (B, C+1, H, W).

        segments: (B, Nc, H, W), Nc == num_segments. With `image` (B, C, H, W): ground-truth hints
        for `num_hints` segments (sampled from Eq. 3 when omitted in training mode; required in
        eval mode). With `colors` (B, K, C) or (K, C), K <= Nc: the user's colours of the first K
        segments; `num_hints` (default K) may stop earlier per sample.
        """
        op = "HintGenerator"
        check.check_float_tensor(op, "segments", segments, 4, "(B, Nc, H, W)")
        if segments.shape[1] != self.num_segments:
            raise ValueError(
                f"{op}: argument 'segments' must have Nc = num_segments = {self.num_segments} channels, "
                f"got shape {tuple(segments.shape)}"
            )
        if (image is None) == (colors is None):
            raise ValueError(f"{op}: pass exactly one of 'image' (training) or 'colors' (user hints)")
        if colors is not None:
            return self._user_hints(segments, colors, num_hints)
        assert image is not None  # exactly one of image / colors (checked above); narrows the type
        if num_hints is None:
            if not self.training:
                raise ValueError(f"{op}: argument 'num_hints' is required in eval mode (sampled only in training)")
            num_hints = self.sample_num_hints(segments.shape[0], generator=generator, device=segments.device)
        hints, mask = segment_hint_colors(segments, image, num_hints, backend=self.backend)
        return torch.cat([hints, mask], dim=1)

    def _user_hints(self, segments: Tensor, colors: Tensor, num_hints) -> Tensor:
        op = "HintGenerator"
        B = segments.shape[0]
        if isinstance(colors, Tensor) and colors.dim() == 2:
            colors = colors.unsqueeze(0).expand(B, -1, -1)
        check.check_float_tensor(op, "colors", colors, 3, "(B, K, C)")
        check.check_same_device(op, "colors", colors, "segments", segments)
        K = colors.shape[1]
        if colors.shape[0] != B or K > self.num_segments:
            raise ValueError(
                f"{op}: argument 'colors' must have shape (B, K, C) with B = {B} and K <= {self.num_segments}, "
                f"got {tuple(colors.shape)}"
            )
        num_hints = check.batch_counts(op, "num_hints", K if num_hints is None else num_hints, B, 0, K, segments.device)
        active = (torch.arange(K, device=segments.device) < num_hints[:, None]).to(segments.dtype)
        chosen = segments[:, :K]
        hints = torch.einsum("bkc,bkhw->bchw", colors.to(segments.dtype) * active[..., None], chosen)
        mask = torch.einsum("bk,bkhw->bhw", active, chosen).unsqueeze(1)
        return torch.cat([hints, mask], dim=1)


__all__ = ["HintGenerator", "num_hints_pmf"]

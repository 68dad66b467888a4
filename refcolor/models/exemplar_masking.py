"""Which pixels of the transferred colour T_ab the colorization sub-net sees (Xu et al., CVPR 2020).

The slides say: "Masking T_ab instead of ground-truth", "Mask Probability: 0.99", and the loss
L_h((1 + lambda M) * F(x), (1 + lambda M) * y). Our reading, stated exactly:

    Training: every pixel of T_ab is masked (hidden: its a*b* set to 0 and its mask value 0)
    independently with probability mask_probability = 0.99, i.e. kept with probability 0.01.
    M is 1 at the kept pixels and 0 elsewhere; the colorization net gets [L, M * T_ab, M].

Optional denser training (not in the slides; off unless full_hint_probability > 0): each training
sample's T_ab is instead given whole (M = 1 at every pixel) with probability full_hint_probability,
drawn per sample after the per-pixel draws (so runs without it keep their random streams). Measured
(docs/training_log.md): a net trained on the 1% masks alone scored under its own input T_ab and
stamped the kept pixels as a dot lattice; one that also sees whole T_ab can refine it, and infers
with inference_hints = "full", a density it was trained on.

Why this reading: (1) the slides contrast it with Zhang et al. 2017's user-hint training, where sparse
ground-truth colour points are revealed; here the points come from T_ab instead; (2) the loss weights
the M = 1 pixels by (1 + lambda): with 99% of the pixels kept that weight would fall on almost every
pixel and mean nothing, with 1% kept it says "follow the few given colours, fill in the rest";
(3) the other reading of the public notes (a geometric stop probability: 99% of the samples get no
hint at all) would leave T_ab unseen in 99% of the steps, and the network would barely learn to use
the exemplar, the point of the method.

Inference (`inference_hints`): "lattice" (default) keeps the same density deterministically, one pixel
per stride x stride cell with stride = round(1 / sqrt(keep probability)) = 10, the pixel at each
cell's centre, so the net sees what training showed it and the output is reproducible; "full" keeps
every pixel (M = 1 everywhere): a density that training shows only with full_hint_probability > 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

INFERENCE_HINTS = ("lattice", "full")


def check_probability(name: str, value, *, include_one: bool = False) -> float:
    """`value` as a float if it is a number in [0, 1) ([0, 1] with include_one); ValueError naming `name`."""
    interval = "[0, 1]" if include_one else "[0, 1)"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value <= 1 if include_one else 0 <= value < 1)
    ):
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def random_hint_mask(
    shape: tuple[int, int, int],
    mask_probability: float,
    *,
    full_hint_probability: float = 0.0,
    generator: torch.Generator | None = None,
    device=None,
) -> Tensor:
    """(B, 1, H, W) float mask for shape (B, H, W): 1 (kept) with probability 1 - mask_probability,
    independently per pixel, then all ones for each sample with probability full_hint_probability
    (module docstring); drawn on the generator's device (CPU by default) and moved to `device`."""
    keep = 1.0 - check_probability("mask_probability", mask_probability)
    full = check_probability("full_hint_probability", full_hint_probability, include_one=True)
    draw_device = generator.device if generator is not None else torch.device("cpu")
    B, H, W = shape
    mask = (torch.rand(B, 1, H, W, generator=generator, device=draw_device) < keep).float()
    if full > 0:  # drawn only when asked for, so the runs without it keep their random streams
        whole = torch.rand(B, generator=generator, device=draw_device) < full
        mask[whole] = 1.0
    return mask.to(device if device is not None else draw_device)


def lattice_stride(mask_probability: float) -> int:
    keep = 1.0 - check_probability("mask_probability", mask_probability)
    return max(1, round(1 / math.sqrt(keep)))


def inference_hint_mask(
    shape: tuple[int, int, int], mask_probability: float, mode: str = "lattice", device=None
) -> Tensor:
    """The deterministic (B, 1, H, W) mask of inference (module docstring)."""
    if mode not in INFERENCE_HINTS:
        raise ValueError(f"inference_hints: expected one of {INFERENCE_HINTS}, got {mode!r}")
    B, H, W = shape
    mask = torch.zeros(B, 1, H, W, device=device)
    if mode == "full":
        return mask.fill_(1.0)
    stride = lattice_stride(mask_probability)
    # Cell centres; an image smaller than one cell still gets its middle pixel.
    top, left = min(stride // 2, (H - 1) // 2), min(stride // 2, (W - 1) // 2)
    mask[..., top::stride, left::stride] = 1.0
    return mask


def masked_hints(t_ab: Tensor, mask: Tensor) -> Tensor:
    """The colorization net's hint channels [M * T_ab, M] (B, 3, H, W)."""
    return torch.cat([t_ab * mask, mask], dim=1)


__all__ = [
    "INFERENCE_HINTS",
    "check_probability",
    "inference_hint_mask",
    "lattice_stride",
    "masked_hints",
    "random_hint_mask",
]

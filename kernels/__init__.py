"""Triton kernels of refcolor, installed as `refcolor.kernels` (never a top-level `kernels`).

One module per op; each needs `triton` and is imported lazily by the op that uses it, so refcolor
itself imports without Triton."""

from __future__ import annotations

import contextlib

import torch


def device_guard(device: torch.device):
    """Makes `device` current around a launch: Triton launches on the current CUDA device, not on
    the tensors' (without it, tensors on cuda:1 are read by a kernel launched on cuda:0)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def pixel_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(batch, channel, row, column) strides of a (B, C, H, W) tensor; a size-1 row or column axis
    gets the stride that keeps p = row * W + column addressable (torch leaves those strides
    arbitrary), as csrc/segment_hint_colors/segment_hint_colors_host.h strides_of."""
    sb, sc, sh, sw = t.stride()
    H, W = t.shape[2], t.shape[3]
    if W == 1:
        sw = 1 if H == 1 else sh
    if H == 1:
        sh = sw * W
    return sb, sc, sh, sw

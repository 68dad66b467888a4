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

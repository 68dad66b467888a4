"""Argument checks shared by refcolor's ops: each error names the argument, what was expected and
what was given (shape, dtype or device)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_float_type(op: str, name: str, value, layout: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor {layout}, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(
            f"{op}: argument '{name}' must be a floating-point tensor, got dtype {_dtype_name(value.dtype)}"
        )


def check_float_tensor(op: str, name: str, value, ndim: int, layout: str) -> torch.Tensor:
    """A floating-point tensor of rank `ndim`; `layout` names the dims, e.g. "(B, C, H, W)"."""
    _check_float_type(op, name, value, layout)
    if value.dim() != ndim:
        raise ValueError(f"{op}: argument '{name}' must have shape {layout} ({ndim} dims), got {tuple(value.shape)}")
    return value


def check_image(op: str, name: str, value, channels: int) -> torch.Tensor:
    """A floating-point image batch (B, channels, H, W) with B >= 1."""
    layout = f"(B, {channels}, H, W)"
    _check_float_type(op, name, value, layout)
    if value.dim() != 4 or value.shape[1] != channels:
        raise ValueError(f"{op}: argument '{name}' must have shape {layout}, got {tuple(value.shape)}")
    if value.shape[0] == 0:
        raise ValueError(f"{op}: argument '{name}' must have a batch size >= 1, got {tuple(value.shape)}")
    return value


def check_same_device(op: str, name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(
            f"{op}: argument '{name}' must be on the device of '{ref_name}' ({ref.device}), got {value.device}"
        )


def check_same_dtype(op: str, name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.dtype != ref.dtype:
        raise TypeError(
            f"{op}: argument '{name}' must have the dtype of '{ref_name}' ({_dtype_name(ref.dtype)}), "
            f"got {_dtype_name(value.dtype)}"
        )


def check_dims_match(
    op: str, name: str, value: torch.Tensor, layout: str, ref_name: str, ref: torch.Tensor, dims: Sequence[int]
) -> None:
    """value.shape[d] == ref.shape[d] for each d in dims."""
    if any(value.shape[d] != ref.shape[d] for d in dims):
        names = layout.strip("()").split(", ")
        expected = "(" + ", ".join(str(ref.shape[d]) if d in dims else names[d] for d in range(value.dim())) + ")"
        raise ValueError(
            f"{op}: argument '{name}' must have shape {layout} = {expected} to match '{ref_name}' "
            f"{tuple(ref.shape)}, got {tuple(value.shape)}"
        )


def check_nonempty(op: str, name: str, value: torch.Tensor, layout: str) -> None:
    if value.numel() == 0:
        raise ValueError(f"{op}: argument '{name}' {layout} must not be empty, got shape {tuple(value.shape)}")


def batch_counts(op: str, name: str, value, batch: int, low: int, high: int, device: torch.device) -> torch.Tensor:
    """An int, a sequence of ints or an integer tensor () / (batch,) -> int64 tensor (batch,) on `device`,
    every entry in [low, high]. CPU tensors are moved to `device`; other devices must match."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{op}: argument '{name}' must be an int or an integer tensor, got bool")
    if isinstance(value, int):
        if not low <= value <= high:
            raise ValueError(f"{op}: argument '{name}' must be in [{low}, {high}], got {value}")
        return torch.full((batch,), value, dtype=torch.int64, device=device)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{op}: argument '{name}' must hold ints, got {list(value)!r}")
        value = torch.tensor(list(value), dtype=torch.int64)
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{op}: argument '{name}' must be an int, a sequence of ints or an integer tensor, "
            f"got {type(value).__name__}"
        )
    if value.is_floating_point() or value.is_complex():
        raise TypeError(f"{op}: argument '{name}' must have an integer dtype, got {_dtype_name(value.dtype)}")
    if value.dim() == 0:
        value = value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(
            f"{op}: argument '{name}' must have shape ({batch},) (one per sample), got {tuple(value.shape)}"
        )
    if value.device != device and value.device.type != "cpu":
        raise ValueError(f"{op}: argument '{name}' must be on {device} (or the CPU), got {value.device}")
    value = value.to(device=device, dtype=torch.int64)
    # Reading the values synchronises with the GPU; skipped while torch.compile traces (the kernels
    # clamp to [low, high] instead of reading out of bounds).
    if not torch.compiler.is_compiling() and value.numel():
        lo, hi = int(value.min()), int(value.max())
        if lo < low or hi > high:
            raise ValueError(f"{op}: argument '{name}' must be in [{low}, {high}], got values in [{lo}, {hi}]")
    return value

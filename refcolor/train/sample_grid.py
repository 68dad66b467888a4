"""Sample grids: one row per sample, one column per named image (e.g. sketch | reference | output |
target), saved as PNG so a run can be watched without TensorBoard."""

from __future__ import annotations

import os

import torch
from PIL import Image, ImageDraw

from refcolor.atomic_files import atomic_write

_LABEL_HEIGHT = 14


def make_grid(columns: list[tuple[str, torch.Tensor]], padding: int = 2) -> torch.Tensor:
    """columns: (name, images (B, 1 or 3, H, W) in [0, 1]), same B, H, W -> (3, H', W') in [0, 1]."""
    if not columns:
        raise ValueError("make_grid: no columns")
    B, _, H, W = columns[0][1].shape
    rows, cols = B, len(columns)
    grid = torch.ones(3, rows * (H + padding) + padding, cols * (W + padding) + padding)
    for c, (name, images) in enumerate(columns):
        if images.shape[0] != B or images.shape[-2:] != (H, W):
            raise ValueError(f"make_grid: column {name!r} has shape {tuple(images.shape)}, expected ({B}, C, {H}, {W})")
        images = images.detach().float().cpu().clamp(0, 1)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        for r in range(B):
            y, x = padding + r * (H + padding), padding + c * (W + padding)
            grid[:, y : y + H, x : x + W] = images[r]
    return grid


def save_grid(path: str | os.PathLike, columns: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """make_grid with the column names above, written atomically as PNG; returns the grid."""
    grid = make_grid(columns)
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    body = Image.fromarray(pixels, "RGB")
    canvas = Image.new("RGB", (body.width, body.height + _LABEL_HEIGHT), "white")
    canvas.paste(body, (0, _LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    W = columns[0][1].shape[-1]
    for c, (name, _) in enumerate(columns):
        draw.text((2 + c * (W + 2), 1), name, fill=(0, 0, 0))
    with atomic_write(path) as f:
        canvas.save(f, format="PNG")
    return grid


__all__ = ["make_grid", "save_grid"]

"""Before/after figure and numbers for the line-preserving downsampling of user line art
(refcolor.data.sketch_preparation.downsample_lines), issue 16 item 2.

    python scripts/line_downsampling_figure.py [--out docs/figures/line_downsampling.png]

A 1024 px drawing with 2 px black strokes (a circle, a diagonal, a horizontal line) is shrunk 8x to
128 px by area averaging (before) and by downsample_lines (after), next to the XDoG strokes that
training draws on a colour image of the same shapes at 128 px. Printed per panel: the darkest and
the mean value on the strokes' path, and the number of 8-connected dark (< 0.5) components
(1 = every stroke joined as drawn; 0 = nothing dark is left).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage

from refcolor.data.sketch import xdog
from refcolor.data.sketch_preparation import downsample_lines

FULL, SMALL = 1024, 128


def drawing(size: int, width: int, fill=None) -> Image.Image:
    """The test shapes at `size`: line art (fill None) or a colour picture whose edges XDoG outlines."""
    s = size / FULL
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = [int(180 * s), int(180 * s), int(840 * s), int(840 * s)]
    if fill is None:
        draw.ellipse(box, outline=(0, 0, 0), width=width)
        draw.line([(int(60 * s), int(950 * s)), (int(950 * s), int(60 * s))], fill=(0, 0, 0), width=width)
        draw.line([(int(60 * s), int(500 * s)), (int(960 * s), int(500 * s))], fill=(0, 0, 0), width=width)
    else:
        draw.ellipse(box, fill=fill)
    return image


def gray(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)[None, None]


def stroke_stats(sketch: torch.Tensor, path: np.ndarray) -> dict:
    values = sketch[0, 0].numpy()
    dark = values < 0.5
    _, components = ndimage.label(dark, structure=np.ones((3, 3)))
    return {
        "darkest": float(values[path].min()),
        "mean_on_path": float(values[path].mean()),
        "dark_components": int(components),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/figures/line_downsampling.png")
    args = parser.parse_args()

    full = gray(drawing(FULL, 2))
    # The strokes' path at 128 px: every small pixel whose 8x8 footprint holds a stroke pixel.
    path = (F.max_pool2d(1 - full, 8)[0, 0] > 0.5).numpy()
    area = F.interpolate(full, size=(SMALL, SMALL), mode="area")
    lines = downsample_lines(full, (SMALL, SMALL))
    colour = torch.from_numpy(np.asarray(drawing(SMALL, 0, fill=(200, 60, 60)), dtype=np.float32) / 255)
    training = xdog(colour.permute(2, 0, 1)[None])  # a training sketch of a colour disc at 128 px
    train_path = (training[0, 0] < 0.9).numpy()

    panels = {
        "area (before)": (area, path),
        "downsample_lines (after)": (lines, path),
        "XDoG training strokes": (training, train_path),
    }
    for name, (sketch, where) in panels.items():
        print(f"{name:26s} {stroke_stats(sketch, where)}")

    crop = (slice(24, 72), slice(24, 72))  # a 48 px window on the circle and the diagonal, enlarged 6x
    tiles = [(s[0, 0].numpy()[crop] * 255).round().astype(np.uint8) for s, _ in panels.values()]
    gap = np.full((48, 4), 255, np.uint8)
    strip = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)
    enlarged = Image.fromarray(strip, "L").resize((strip.shape[1] * 6, 48 * 6), Image.Resampling.NEAREST)
    figure = Image.new("L", (enlarged.width, enlarged.height + 20), 255)
    figure.paste(enlarged, (0, 20))
    draw = ImageDraw.Draw(figure)
    for i, name in enumerate(panels):
        draw.text((i * (48 + 4) * 6 + 4, 4), name, fill=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out)
    print(f"wrote {out}: left area averaging, middle downsample_lines, right XDoG training strokes")


if __name__ == "__main__":
    main()

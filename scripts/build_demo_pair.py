#!/usr/bin/env python
"""Rebuild the README quick start's inputs, `refcolor/assets/demo/{sketch,reference}.png`, from the
bundled `refcolor/assets/sample.png` (the carpenter, also sample 196 of the training set; the reference
is recoloured beyond the training jitter, so the output shows colours read from the reference):

- sketch.png: its XDoG outline with the fixed default parameters (grayscale PNG, 256x211);
- reference.png: the same illustration with its hues turned by 0.35 turns (YUV chroma rotation,
  luma kept, as in training's colour jitter) and bent by a random thin-plate spline (4x4 lattice,
  jitter 0.08, seed 3), so the colours the model should transfer differ from the original's and
  the shapes do not line up pixel for pixel: an augmented-self reference, as in Lee et al. 2020.

    python scripts/build_demo_pair.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from refcolor.data.augmented_self_reference import hue_rotation_matrices
from refcolor.data.sketch import xdog
from refcolor.images import pil_to_tensor, read_image, tensor_to_pil
from refcolor.nn.random_tps import RandomTPS

ASSETS = Path(__file__).resolve().parent.parent / "refcolor" / "assets"


def main() -> None:
    image = pil_to_tensor(read_image(ASSETS / "sample.png")).unsqueeze(0)  # (1, 3, H, W) in [0, 1]
    out = ASSETS / "demo"
    out.mkdir(exist_ok=True)
    tensor_to_pil(xdog(image)[0]).save(out / "sketch.png", optimize=True)
    B, C, H, W = image.shape
    recoloured = hue_rotation_matrices(torch.tensor([0.35])).float() @ image.reshape(B, C, H * W)
    recoloured = recoloured.reshape(B, C, H, W).clamp(0, 1)
    warped, _ = RandomTPS(grid_sizes=4, jitter=0.08, padding_mode="border")(
        recoloured, torch.Generator().manual_seed(3)
    )
    tensor_to_pil(warped[0]).save(out / "reference.png", optimize=True)
    print(f"wrote {out / 'sketch.png'} and {out / 'reference.png'} ({W}x{H})")


if __name__ == "__main__":
    main()

"""scripts/heldout_samples.py, the held-out pictures the model cards show: every model kind's grid
is written (the exemplar's with both warps and the correspondence column)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.data import sample_images_dir
from refcolor.models import ExemplarColorizer, ExemplarColorizerConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from tests.helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("heldout_samples")


@pytest.mark.parametrize("correspondence,warp", [("none", "mild"), ("features", "strong")])
def test_exemplar_grid(script, tmp_path, correspondence, warp):
    torch.manual_seed(0)
    config = ExemplarColorizerConfig(
        image_size=32, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16), correspondence=correspondence
    )
    weights = tmp_path / "model.safetensors"
    save_weights(weights, ExemplarColorizer(config), describe("exemplar", config))
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(sample_images_dir().glob("*.png"))[:3]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "grid.png"
    assert script.main([str(weights), str(images), "-o", str(out), "--warp", warp]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] >= 3 * 32 and grid.shape[1] >= 9 * 32  # three rows of nine columns

"""scripts/heldout_samples.py, the held-out pictures the model cards show: every model kind's grid
is written (the exemplar's with both warps and the correspondence column)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.data import sample_images_dir
from refcolor.models import ExemplarColorizer, ExemplarColorizerConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from tests.helpers import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("heldout_samples")


def _grid(script, tmp_path, kind, model, images: int, *options: str) -> np.ndarray:
    """The script run on `model` (saved as a weights file) and the first `images` sample images."""
    weights = tmp_path / f"{kind}.safetensors"
    save_weights(weights, model, describe(kind, model.config))
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(sample_images_dir().glob("*.png"))[:images]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "grid.png"
    assert script.main([str(weights), str(folder), "-o", str(out), *options]) == 0
    return np.asarray(Image.open(out))


@pytest.mark.parametrize("correspondence,warp", [("none", "mild"), ("features", "strong")])
def test_exemplar_grid(script, tmp_path, correspondence, warp):
    torch.manual_seed(0)
    config = ExemplarColorizerConfig(
        image_size=32, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16), correspondence=correspondence
    )
    grid = _grid(script, tmp_path, "exemplar", ExemplarColorizer(config), 3, "--warp", warp)
    assert grid.shape[0] >= 3 * 32 and grid.shape[1] >= 9 * 32  # three rows of nine columns


def test_scft_poses_grid(script, tmp_path):
    """--poses: per sketch, flipped, rotated and another image's references, each with its output."""
    torch.manual_seed(0)
    config = SCFTColorizerConfig(image_size=32, encoder_widths=(4, 6), num_res_blocks=0, norm="none")
    grid = _grid(script, tmp_path, "scft", SCFTColorizer(config), 2, "--poses")
    assert grid.shape[0] >= 2 * 32 and grid.shape[1] >= 8 * 32  # two rows of eight columns
    image = torch.eye(3).view(1, 3, 3, 1).expand(1, 3, 3, 3)
    torch.testing.assert_close(script.rotated(image, 0), image)  # 0 degrees: as is

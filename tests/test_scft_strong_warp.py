"""The strong warp of issue 27: AugmentedSelfReference's composed affine + TPS warp keeps the exact
correspondence, and the strong evaluation protocol cannot be passed by copying by position; the
pairs mode scores real (target, reference) pairs."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from refcolor import cli
from refcolor.data import AugmentedSelfReference, sample_images_dir
from refcolor.data.augmented_self_reference import WARPS
from refcolor.evaluation import scft_eval as S
from refcolor.evaluation import scft_pairs
from refcolor.images import pil_to_tensor
from refcolor.models.scft_colorizer import SCFTColorizerOutput
from refcolor.ops.tps_correspondence import tps_correspondence

SIZE = 64
FEATURES = (16, 16)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for path in sorted(sample_images_dir().glob("*.png"))[:6]:
        shutil.copy(path, folder / path.name)
    return folder


def _batch(n=4, size=SIZE):
    from PIL import Image

    paths = sorted(sample_images_dir().glob("*.png"))[:n]
    return torch.stack([pil_to_tensor(Image.open(p).convert("RGB").resize((size, size))) for p in paths])


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_composed_grid_rebuilds_the_reference(padding_mode):
    augment = AugmentedSelfReference.with_warp("strong", padding_mode=padding_mode)
    out = augment(_batch(), torch.Generator().manual_seed(1))
    rebuilt = F.grid_sample(out["target"], out["grid"], align_corners=True, padding_mode=padding_mode)
    torch.testing.assert_close(rebuilt, out["reference"], atol=1e-5, rtol=0)


def test_affine_grid_is_the_drawn_map():
    """Identity spline: the grid is exactly the affine map of the pixel lattice (flip, then rotation,
    scale and shift in pixel units), checked on a non-square image."""
    H, W = 5, 9
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    identity = torch.stack([xs, ys], -1)[None].double()
    params = torch.tensor([[1.0, math.radians(90), 2.0, 0.25, 0.0]], dtype=torch.float64)
    grid = AugmentedSelfReference.affine_grid(identity, params)
    # Pixel (row 0, col 0) is at (-4, -2) px from the centre; flipped (4, -2); / 2 -> (2, -1); rotated
    # 90 degrees -> (1, 2); shifted by 0.25 of the width (2 px of the 8-px half-span doubled) -> (3, 2).
    px = grid[0, 0, 0] * torch.tensor([4.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(px, torch.tensor([1.0 + 0.25 * 8, 2.0], dtype=torch.float64))


def test_mild_keeps_its_random_stream_and_strong_moves_content():
    images = _batch()
    mild = AugmentedSelfReference()(images, torch.Generator().manual_seed(5))
    named = AugmentedSelfReference.with_warp("mild")(images, torch.Generator().manual_seed(5))
    for key in mild:
        torch.testing.assert_close(mild[key], named[key], atol=0, rtol=0)
    strong = AugmentedSelfReference.with_warp("strong")(images, torch.Generator().manual_seed(5))
    # Same jitter, sketch and spline draws before the affine part: target and sketch are identical.
    torch.testing.assert_close(strong["target"], mild["target"], atol=0, rtol=0)
    torch.testing.assert_close(strong["sketch"], mild["sketch"], atol=0, rtol=0)
    same = []
    for out in (mild, strong):
        index, valid = tps_correspondence(out["grid"], FEATURES)
        cells = torch.arange(FEATURES[0] * FEATURES[1])
        dr = (index // FEATURES[1] - cells // FEATURES[1]).abs()
        dc = (index % FEATURES[1] - cells % FEATURES[1]).abs()
        same.append(float(((torch.maximum(dr, dc) <= 1) & valid).sum() / valid.sum()))
    assert same[0] > 0.95 and same[1] < 0.3, same


def test_affine_draw_ranges():
    augment = AugmentedSelfReference.with_warp("strong")
    p = augment.sample_affine(4000, generator=torch.Generator().manual_seed(0))
    assert 0.45 < float(p[:, 0].mean()) < 0.55
    assert float(p[:, 1].abs().max()) <= math.radians(30) and float(p[:, 1].abs().max()) > math.radians(29)
    assert 0.7 <= float(p[:, 2].min()) and float(p[:, 2].max()) <= 1.4
    assert float(p[:, 3:].abs().max()) <= 0.2


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"flip": 1.5}, "'flip' must be in [0, 1.0]"),
        ({"rotation": -1}, "'rotation'"),
        ({"scale": (1.2, 0.8)}, "'scale' must be (low, high)"),
        ({"translation": math.inf}, "'translation'"),
    ],
)
def test_affine_argument_errors(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        AugmentedSelfReference(**kwargs)
    with pytest.raises(ValueError, match="'warp' must be one of"):
        AugmentedSelfReference.with_warp("wild")


class SamePosition(torch.nn.Module):
    """Copies by position: its output is the reference and its attention the identity map."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, sketch, reference, return_attention=False):
        if not return_attention:
            return reference
        n = FEATURES[0] * FEATURES[1]
        attention = torch.eye(n).expand(sketch.shape[0], n, n)
        return SCFTColorizerOutput(reference, None, None, attention, FEATURES, FEATURES)


class StrongOracle(torch.nn.Module):
    """Knows the strong protocol: the target, and the true correspondence as attention."""

    def __init__(self, images):
        super().__init__()
        from refcolor.data import ImageFolder

        self.dataset = ImageFolder(images, size=SIZE)
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, sketch, reference, return_attention=False):
        if not return_attention:
            return reference
        b = sketch.shape[0]
        triples = [
            S.augmented_self_triple(self.dataset[self.calls + i]["image"], self.calls + i, 0, "strong")
            for i in range(b)
        ]
        self.calls += b
        index, _ = tps_correspondence(torch.cat([t["grid"] for t in triples]), FEATURES, FEATURES)
        attention = F.one_hot(index, FEATURES[0] * FEATURES[1]).float()
        target = torch.cat([t["target"] for t in triples]) * 2 - 1
        return SCFTColorizerOutput(target, None, None, attention, FEATURES, FEATURES)


def test_strong_protocol_fails_copying_by_position_and_passes_the_oracle(images):
    mild = S.evaluate_scft(SamePosition(), images, image_size=SIZE, batch_size=3, warp="mild").accuracy()
    strong = S.evaluate_scft(SamePosition(), images, image_size=SIZE, batch_size=3, warp="strong")
    acc = strong.accuracy()
    assert acc is not None and mild is not None
    assert mild["within_one"] > 0.9  # the mild warp rewards copying by position
    assert acc["within_one"] == pytest.approx(acc["same_within_one"]) and acc["within_one"] < 0.3
    oracle = S.evaluate_scft(StrongOracle(images), images, image_size=SIZE, batch_size=3, warp="strong")
    assert oracle.accuracy()["within_one"] == 1.0
    assert torch.all(oracle.psnr[:, 0] == S.MAX_PSNR)
    assert oracle.warp == "strong"
    # Copying the strongly warped reference is far from the target.
    copy = S.METHODS.index("copy_reference")
    assert float(strong.psnr[:, copy].mean()) < float(oracle.psnr[:, copy].mean()) + 1e-9 < S.MAX_PSNR


def test_pairs_mode(tmp_path, images):
    from PIL import Image

    paths = sorted(images.glob("*.png"))
    for i in range(3):
        Image.open(paths[i]).convert("RGB").save(tmp_path / f"p{i}_target.png")
        Image.open(paths[i]).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            tmp_path / f"p{i}_reference.png"
        )
    (tmp_path / "notes.txt").write_text("ignored")
    pairs = scft_pairs.find_pairs(tmp_path)
    assert [p["name"] for p in pairs] == ["p0", "p1", "p2"]
    result = scft_pairs.evaluate_scft_pairs(SamePosition(), tmp_path, image_size=SIZE, batch_size=2)
    assert result.num_images == 3 and result.warp == "pairs" and result.correspondence is None
    # The copy-the-reference model is the copy_reference baseline itself.
    copy = S.METHODS.index("copy_reference")
    torch.testing.assert_close(result.psnr[:, 0], result.psnr[:, copy])
    assert result.palette is not None and result.palette.shape == (3, 3)
    out = tmp_path / "report"
    S.write_report(result, out)
    assert "pairs of one subject" in (out / "scft_eval.md").read_text()


def test_pairs_errors(tmp_path):
    with pytest.raises(ValueError, match="no NAME_target"):
        scft_pairs.find_pairs(tmp_path)
    (tmp_path / "a_target.png").write_bytes(b"")
    with pytest.raises(ValueError, match="'a' has no a_reference image"):
        scft_pairs.find_pairs(tmp_path)


def test_cli_warp_and_pairs_arguments(tmp_path, capsys):
    assert cli.main(["evaluate", "--model", "guide", "--warp", "strong", "--data", str(tmp_path), "--out", "x"]) == 1
    assert "--warp applies to --model scft and exemplar, got --model guide" in capsys.readouterr().err
    argv = ["evaluate", "--model", "exemplar", "--pairs", str(tmp_path), "--out", "x"]
    assert cli.main(argv) == 1
    assert "--pairs applies to --model scft, got --model exemplar" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", "scft", "--out", "x"]) == 1
    assert "--data DIR is required" in capsys.readouterr().err


def test_strong_warp_preset_is_documented():
    assert WARPS["strong"] == {"flip": 0.5, "rotation": 30.0, "scale": (0.7, 1.4), "translation": 0.2}

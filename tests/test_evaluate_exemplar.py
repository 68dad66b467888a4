"""The exemplar colorizer's evaluation (refcolor.evaluation.exemplar_eval) and `refcolor evaluate
--model exemplar`, checked with models whose figures are known: one that returns the target's
colours, one that returns no colour (the gray baseline) and one that does Reinhard's transfer."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from refcolor import cli
from refcolor.data import ImageFolder, sample_images_dir
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.evaluation import exemplar_eval as E
from refcolor.inference import flats
from refcolor.lab import gray_rgb, normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models import ExemplarColorizer, ExemplarColorizerConfig, ExemplarOutput
from refcolor.models.adain import channel_stats
from refcolor.models.exemplar_transfer import TransferNet, TransferOutput
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights

SIZE = 32


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for path in sorted(sample_images_dir().glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


class Fake(torch.nn.Module):
    """Returns a*b* chosen by `mode` for both sub-nets: "target" (the protocol's target, rebuilt from
    the same seed; found by its luminance), "gray" (zero) or "reinhard"."""

    def __init__(self, images, mode):
        super().__init__()
        self.config = ExemplarColorizerConfig(image_size=SIZE)
        self.mode = mode
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.transfer = TransferNet("efficientnet-lite0", (8, 8, 8, 8))  # its encoder: correspondence_only
        dataset = ImageFolder(images, size=SIZE)
        targets = [E.augmented_self_pair(dataset[i]["image"], i)[0] for i in range(len(dataset))]
        self.targets = torch.cat(targets)

    def forward(self, luminance, exemplar):
        zero = luminance.new_zeros(luminance.shape[0], 2, *luminance.shape[-2:])
        if self.mode == "gray":
            ab = zero
        elif self.mode == "reinhard":
            ab = E.reinhard_ab(luminance, zero, exemplar)
        else:
            lum, ab_all = rgb_to_normalized_lab(self.targets)
            index = [int((lum - one).abs().flatten(1).mean(1).argmin()) for one in luminance]
            ab = ab_all[index]
        return ExemplarOutput(ab, TransferOutput(ab, [], []), None)


def test_known_models_score_their_baselines(images):
    gray = E.evaluate_exemplar(Fake(images, "gray"), images, timing_sizes=())
    col = {name: j for j, name in enumerate(E.METHODS)}
    model, transfer, reinhard, plain = (gray.psnr[:, col[n]] for n in ("model", "transfer_only", "reinhard", "gray"))
    assert torch.equal(model, plain) and torch.equal(transfer, plain)
    assert (reinhard != plain).any() and (gray.psnr[:, col["luminance_histogram"]] != plain).any()
    assert (gray.palette[:, 0] == 0).all() and (
        gray.colourfulness[:, 0] < 0.05
    ).all()  # no colour (0.005: D65 rounding)
    again = E.evaluate_exemplar(Fake(images, "reinhard"), images, batch_size=2, timing_sizes=())
    torch.testing.assert_close(again.psnr[:, 0], again.psnr[:, col["reinhard"]])
    torch.testing.assert_close(again.palette[:, 0], again.palette[:, col["reinhard"]])
    # exemplar_copy: the target's luminance with the warped exemplar's a*b*, whatever the model.
    dataset = ImageFolder(images, size=SIZE)
    for i in range(len(dataset)):
        target, exemplar = E.augmented_self_pair(dataset[i]["image"], i)
        copied = normalized_lab_to_rgb(rgb_to_normalized_lab(target)[0], rgb_to_normalized_lab(exemplar)[1])
        torch.testing.assert_close(gray.psnr[i, col["exemplar_copy"]], E.psnr(copied, target)[0].to(gray.psnr.dtype))
    # the baselines do not depend on the model (correspondence_only: the same encoder weights)
    baselines = [col[n] for n in ("reinhard", "luminance_histogram", "gray", "exemplar_copy")]
    torch.testing.assert_close(again.psnr[:, baselines], gray.psnr[:, baselines])
    oracle = E.evaluate_exemplar(Fake(images, "target"), images, timing_sizes=())
    assert (oracle.psnr[:, 0] > 50).all() and (oracle.ssim[:, 0] > 0.999).all()
    assert (oracle.psnr[:, 0] > oracle.psnr[:, col["gray"]] + 10).all()
    # model_flat: the oracle's output (the target) as flats over its XDoG outline's line regions.
    flat = E.METHODS.index("model_flat")
    for i in range(len(dataset)):
        target, _ = E.augmented_self_pair(dataset[i]["image"], i)
        luminance = rgb_to_normalized_lab(target)[0]
        soft = normalized_lab_to_rgb(luminance, rgb_to_normalized_lab(target)[1])
        sketch = prepare_sketch(gray_rgb(luminance), extract="always")
        expected = E.psnr(flats.flatten(soft, sketch).image, target)[0].to(oracle.psnr.dtype)
        torch.testing.assert_close(oracle.psnr[i, flat], expected)
    assert (oracle.psnr[:, flat] < oracle.psnr[:, 0]).all()


def test_reinhard_transfers_the_exemplars_ab_statistics():
    generator = torch.Generator().manual_seed(0)
    source_ab = torch.randn(2, 2, 8, 8, generator=generator) * 0.1
    exemplar = torch.rand(2, 3, 6, 6, generator=generator)
    out = E.reinhard_ab(torch.zeros(2, 1, 8, 8), source_ab, exemplar)
    _, exemplar_ab = rgb_to_normalized_lab(exemplar)
    for got, want in zip(channel_stats(out), channel_stats(exemplar_ab), strict=True):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_colourfulness_of_known_images():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    gray = torch.full((1, 3, 4, 4), 0.5)
    values = E.colourfulness(torch.cat([red, gray]))
    torch.testing.assert_close(values, torch.tensor([0.3 * (255**2 + 127.5**2) ** 0.5, 0.0], dtype=torch.float64))


def test_timing_and_report_files(images, tmp_path):
    torch.manual_seed(0)
    model = ExemplarColorizer(
        ExemplarColorizerConfig(image_size=SIZE, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16))
    )
    result = E.evaluate_exemplar(model, images, max_images=2, timing_sizes=(16, 24), timing_runs=1)
    assert (
        result.num_images == 2 and set(result.timing_ms) == {16, 24} and all(v > 0 for v in result.timing_ms.values())
    )
    paths = E.write_report(result, tmp_path / "report")
    rows = list(csv.reader(open(paths["csv"], encoding="utf-8")))
    assert [r[0] for r in rows[1 : len(E.METHODS) + 2]] == [*E.METHODS, "exemplar"]
    assert rows[-2][0] == "16" and rows[-1][0] == "24"
    text = paths["md"].read_text()
    assert "| model |" in text and "| 24 x 24 |" in text and str(images.resolve()) in text
    assert paths.get("png") is None or paths["png"].stat().st_size > 0


def test_bad_arguments_are_named(images):
    model = Fake(images, "gray")
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        E.evaluate_exemplar(model, images, batch_size=0)
    with pytest.raises(ValueError, match="max_images: expected an integer >= 1, got 0"):
        E.evaluate_exemplar(model, images, max_images=0)


def test_evaluate_cli(tmp_path, images, capsys, monkeypatch):
    monkeypatch.setattr(E, "TIMING_SIZES", (16, 24))  # 256 and 512 px cost seconds on a CPU
    config = ExemplarColorizerConfig(image_size=SIZE, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16))
    weights = tmp_path / "model.safetensors"
    save_weights(weights, ExemplarColorizer(config), describe("exemplar", config))
    args = ["evaluate", "--model", "exemplar", "--checkpoint", str(weights), "--data", str(images)]
    assert cli.main([*args, "--out", str(tmp_path / "eval"), "--max-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "| transfer_only |" in out and "| 24 x 24 |" in out
    assert (tmp_path / "eval" / "exemplar_eval.csv").is_file() and (tmp_path / "eval" / "exemplar_eval.md").is_file()
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                "exemplar",
                "--checkpoint",
                str(tmp_path / "nope"),
                "--data",
                str(images),
                "--out",
                "o",
            ]
        )
        != 0
    )

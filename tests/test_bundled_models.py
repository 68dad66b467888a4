"""The models bundled in refcolor/models/pretrained: finding them (refcolor.models.bundled), bundling
a run (scripts/bundle_model.py: float16 storage, metadata, atomic write), loading them
(Colorizer.pretrained, GuidedColorizer.pretrained) and the CLI's default when no --checkpoint is
given. Tiny models in a temporary folder stand in for the bundled files through
$REFCOLOR_PRETRAINED_DIR; the last tests check the real files and skip only while they are absent."""

from __future__ import annotations

import hashlib
import json
import re
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image
from safetensors import safe_open

import refcolor
from refcolor.cli import main
from refcolor.images import pil_to_tensor
from refcolor.lab import rgb_to_normalized_lab
from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
from refcolor.models.bundled import (
    PRETRAINED_DIR_ENV,
    bundled_card_path,
    bundled_kinds,
    bundled_weights_path,
    pretrained_dir,
)
from refcolor.models.loading import load_model
from refcolor.models.registry import describe
from refcolor.models.weights import read_config, save_weights
from refcolor.train.checkpoint import CheckpointManager
from tests.helpers import load_script

REPO = Path(__file__).resolve().parents[1]
PACKAGE_PRETRAINED = Path(refcolor.__file__).resolve().parent / "models" / "pretrained"
DEMO = Path(refcolor.__file__).resolve().parent / "assets" / "demo"
SIZE = 32

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle_script():
    return load_script("bundle_model")


def _models(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    scft = SCFTColorizer(SCFTColorizerConfig.preset("small", image_size=SIZE))
    guide = GuidingPainter(GuidingPainterConfig.preset("small", image_size=SIZE))
    with torch.no_grad():  # weights of float32 precision everywhere: float16 storage must round them
        for model in (scft, guide):
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
    return {"scft": scft, "guide": guide}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """kind -> (model, run directory holding its model.safetensors), as training leaves them."""
    found = {}
    for kind, model in _models().items():
        run = tmp_path_factory.mktemp(f"run_{kind}")
        save_weights(run / "model.safetensors", model, describe(kind, model.config))
        found[kind] = (model, run)
    return found


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, runs, bundle_script) -> Path:
    """A stand-in pretrained folder, made by the bundling script from the tiny runs."""
    folder = tmp_path_factory.mktemp("pretrained")
    for kind, (_, run) in runs.items():
        assert bundle_script.main([str(run), kind, "-o", str(folder / f"{kind}.safetensors")]) == 0
    return folder


@pytest.fixture
def bundled(bundle_dir, monkeypatch) -> Path:
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(bundle_dir))
    return bundle_dir


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    sketch = torch.ones(1, 45, 70)
    sketch[:, 10:12, :] = 0
    sketch[:, :, 30:32] = 0
    Image.fromarray((sketch[0] * 255).byte().numpy()).save(root / "sketch.png")
    colours = (torch.rand(40, 52, 3, generator=g) * 255).byte().numpy()
    Image.fromarray(colours).save(root / "reference.png")
    return root


def _same_up_to_float16(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    """Every tensor loads in the model's own dtype, within float16's rounding of the original."""
    ours = original.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == ours[name].dtype, name
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, ours[name], rtol=2**-11, atol=2**-24, msg=name)
            assert torch.equal(tensor, ours[name].half().float()), name
        else:
            assert torch.equal(tensor, ours[name]), name


# --------------------------------------------------------------------------- the bundling script


def test_bundle_stores_float16_with_metadata_and_loads_as_float32(runs, bundle_dir, capsys, bundle_script):
    model, run = runs["scft"]
    out = bundle_dir / "again.safetensors"
    assert bundle_script.main([str(run), "scft", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in printed and f"{out.stat().st_size / 1e6:.2f} MB" in printed
    assert not list(bundle_dir.glob(".*.tmp"))  # the atomic write left no temporary file

    with safe_open(out, framework="pt") as f:
        metadata = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}  # the small presets have no integer buffers
    assert metadata["stored_dtype"] == "float16" and metadata["source"] == "model.safetensors"
    assert "step" not in metadata  # a run without checkpoints: unknown
    assert read_config(out) == describe("scft", model.config)
    # float32 would be twice the size: the float16 file holds 2 bytes per parameter plus a header
    parameters = sum(p.numel() for p in model.state_dict().values())
    assert 2 * parameters < out.stat().st_size < 2 * parameters + 64_000

    loaded = load_model(out, expected_kind="scft").model
    _same_up_to_float16(loaded, model)
    sketch, reference = torch.rand(1, 1, SIZE, SIZE) * 2 - 1, torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():  # within one 8-bit level of the output image ([-1, 1]: 2 / 255); measured 2.5e-3
        torch.testing.assert_close(loaded(sketch, reference), model.eval()(sketch, reference), rtol=0, atol=2 / 255)


def test_bundle_records_the_training_step(runs, tmp_path, bundle_script):
    """From a checkpoint its step; from model.safetensors the latest checkpoint's, only when it holds
    the same weights."""
    model, _ = runs["guide"]
    run = tmp_path / "run"
    config = describe("guide", model.config)
    CheckpointManager(run).save(7, {"generator": model}, {}, config=config)
    out = tmp_path / "guide.safetensors"

    def bundled_step():
        assert bundle_script.main([str(run), "guide", "-o", str(out)]) == 0
        with safe_open(out, framework="pt") as f:
            return f.metadata().get("step"), f.metadata()["source"]

    assert bundled_step() == ("7", "checkpoints/step_00000007.pt")  # no model.safetensors: the checkpoint
    save_weights(run / "model.safetensors", model, config)
    assert bundled_step() == ("7", "model.safetensors")
    other = _models(seed=1)["guide"]
    save_weights(run / "model.safetensors", other, config)  # not what the checkpoint holds
    assert bundled_step() == (None, "model.safetensors")
    _same_up_to_float16(load_model(out).model, other)


def test_bundle_errors_are_one_line_and_write_nothing(runs, tmp_path, capsys, bundle_script):
    model, run = runs["scft"]
    out = tmp_path / "scft.safetensors"
    assert bundle_script.main([str(run), "guide", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a 'scft' model, expected 'guide'" in err, err

    huge = SCFTColorizer(model.config)
    with torch.no_grad():
        next(huge.parameters()).view(-1)[0] = 1e6  # beyond float16's 65504: would be stored as inf
    save_weights(tmp_path / "huge" / "model.safetensors", huge, describe("scft", model.config))
    assert bundle_script.main([str(tmp_path / "huge"), "scft", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exceeds float16's 65504" in err, err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- finding and loading


def test_bundle_sets_weightless_model_options(runs, tmp_path, capsys, bundle_script):
    _, run = runs["guide"]
    out = tmp_path / "guide.safetensors"
    assert bundle_script.main([str(run), "guide", "-o", str(out), "--model-override", "match_hint_means=true"]) == 0
    assert load_model(out).model.config.match_hint_means is True
    assert load_model(run).model.config.match_hint_means is False
    assert (
        bundle_script.main([str(run), "guide", "-o", str(tmp_path / "x.safetensors"), "--model-override", "depth=2"])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--model-override: expected KEY=VALUE with KEY one of ['match_hint_means']" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_the_default_folder_is_the_package_s_own(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    assert pretrained_dir().resolve() == PACKAGE_PRETRAINED
    assert (pretrained_dir() / "README.md").is_file()
    assert bundled_card_path("guide") == pretrained_dir() / "guide.md"


def test_pyproject_packages_the_bundled_weights_and_cards():
    """A regular install copies package data only where pyproject's patterns say so."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["refcolor"]
    for name in ("scft.safetensors", "guide.safetensors", "exemplar.safetensors", "scft.md", "guide.md", "README.md"):
        assert any(fnmatch(f"models/pretrained/{name}", p) for p in patterns), name


def test_every_model_kind_has_a_card_with_the_template_s_sections(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    for kind in ("scft", "guide", "exemplar"):
        if kind == "exemplar" and _absent(kind):
            continue
        card = bundled_card_path(kind).read_text(encoding="utf-8")
        assert card.startswith(f"# {kind}: "), kind
        for heading in ("## Training", "## Evaluation (held-out split", "## Limits", "## Licence"):
            assert f"\n{heading}" in card, (kind, heading)
        for field in ("- Paper:", "- Weights: `", "- Reproduce: `", "- Data:", "- Resolution:", "- Hardware and time:"):
            assert f"\n{field}" in card, (kind, field)
        assert f"refcolor evaluate --model {kind} " in card, kind
        # the run directory: runs/bundled_KIND, or a fine-tune's runs/bundled_KIND_SUFFIX
        assert re.search(rf"scripts/bundle_model\.py runs/bundled_{kind}(_\w+)? {kind}", card), kind


def test_pretrained_loads_the_bundled_files(bundled, runs):
    colorizer = refcolor.Colorizer.pretrained(size=48, keep_lines=False)
    assert colorizer.size == 48 and colorizer.keep_lines is False
    _same_up_to_float16(colorizer.model, runs["scft"][0])
    painter = refcolor.GuidedColorizer.pretrained(keep_lines=False)
    assert painter.source == bundled / "guide.safetensors" and painter.keep_lines is False
    _same_up_to_float16(painter.model, runs["guide"][0])
    assert bundled_kinds() == ["guide", "scft"]


def test_a_missing_bundled_file_is_a_one_line_error(tmp_path, monkeypatch, images, capsys):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    expected = tmp_path / "scft.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        bundled_weights_path("scft")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"no bundled 'scft' model: {expected} is missing" in message
    assert "scripts/train_bundled.sh scft" in message and "--checkpoint" in message
    with pytest.raises(FileNotFoundError, match="no bundled 'guide' model"):
        refcolor.GuidedColorizer.pretrained()
    with pytest.raises(ValueError, match="unknown model 'paper'"):
        bundled_weights_path("paper")
    assert bundled_kinds() == []

    sketch, reference = images / "sketch.png", images / "reference.png"
    assert main(["colorize", str(sketch), "-r", str(reference), "-o", str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("refcolor colorize: error: no bundled 'scft' model"), err
    assert main(["guide", str(sketch), "--out", str(tmp_path / "regions")]) == 1
    assert capsys.readouterr().err.startswith("refcolor guide: error: no bundled 'guide' model")
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "regions").exists()


# --------------------------------------------------------------------------- the CLI's default


def test_cli_colorize_and_guide_use_the_bundled_models(bundled, images, tmp_path, capsys):
    sketch, reference = images / "sketch.png", images / "reference.png"
    out = tmp_path / "colorized.png"
    assert main(["colorize", str(sketch), "--reference", str(reference), "-o", str(out)]) == 0
    assert Image.open(out).size == (70, 45)

    regions = tmp_path / "regions"
    assert main(["guide", str(sketch), "--out", str(regions)]) == 0
    assert str(bundled / "guide.safetensors") in capsys.readouterr().out  # it names the model it loaded
    data = json.loads((regions / "sketch_regions.json").read_text())
    assert data["size"] == [70, 45] and len(data["regions"]) >= 1
    assert Image.open(regions / "sketch_regions.png").size == (70, 45)

    colors = tmp_path / "colors.json"
    colors.write_text(json.dumps(["#e03c31"]))
    painted = tmp_path / "painted.png"
    assert main(["guide", str(sketch), "--colors", str(colors), "-o", str(painted)]) == 0
    assert Image.open(painted).size == (70, 45)


def test_cli_evaluate_uses_the_bundled_model(bundled, images, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    Image.open(images / "reference.png").resize((SIZE, SIZE)).save(data / "a.png")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "guide", "--data", str(data), "--out", str(out)]) == 0
    assert f"evaluating {bundled / 'guide.safetensors'} on 1 images" in capsys.readouterr().out
    assert (out / "psnr_vs_hints.md").is_file()


def test_help_names_the_bundled_default(capsys):
    for command in ("colorize", "guide", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "default: the bundled" in " ".join(capsys.readouterr().out.split()), command


# --------------------------------------------------------------------------- the real bundled files


def _absent(kind: str) -> bool:
    return not (PACKAGE_PRETRAINED / f"{kind}.safetensors").is_file()


def _check_real_file(kind: str) -> None:
    """Stored as float16, described by a filled-in card whose sha256 is the file's."""
    path = bundled_weights_path(kind)
    assert path == PACKAGE_PRETRAINED / f"{kind}.safetensors"
    with safe_open(path, framework="pt") as f:
        stored = f.metadata().get("stored_dtype")
    assert stored == "float16", f"{path.name} stored as {stored!r}: write it with scripts/bundle_model.py"
    card = bundled_card_path(kind).read_text(encoding="utf-8")
    assert "<<FIGURES" not in card, f"{kind}.md still has placeholders"
    assert re.search(r"sha256 ([0-9a-f]{64})", card).group(1) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(
    _absent("scft"), reason="bundled weights not yet added (refcolor/models/pretrained/scft.safetensors)"
)
def test_the_bundled_scft_model_colours_the_demo_pair(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    _check_real_file("scft")
    sketch = Image.open(DEMO / "sketch.png")
    out = refcolor.Colorizer.pretrained()(sketch, DEMO / "reference.png")
    assert out.size == sketch.size and out.mode == "RGB"
    colours = out.getcolors(maxcolors=1 << 16)  # None: more than that many
    assert colours is None or len(colours) > 1  # not one flat colour


@pytest.mark.skipif(
    _absent("guide"), reason="bundled weights not yet added (refcolor/models/pretrained/guide.safetensors)"
)
def test_the_bundled_guide_model_proposes_regions_on_the_demo_sketch(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    _check_real_file("guide")
    sketch = Image.open(DEMO / "sketch.png")
    painter = refcolor.GuidedColorizer.pretrained()
    regions = painter.regions(sketch)
    assert regions.size == sketch.size and len(regions) >= 2
    out = painter.colorize(sketch, ["#e03c31", "#2a5bd7"])
    assert out.size == sketch.size and out.mode == "RGB"


def _lightness(image: Image.Image) -> torch.Tensor:
    return rgb_to_normalized_lab(pil_to_tensor(image).unsqueeze(0))[0]


@pytest.mark.skipif(
    _absent("exemplar"), reason="bundled weights not yet added (refcolor/models/pretrained/exemplar.safetensors)"
)
def test_the_bundled_exemplar_model_colours_a_gray_image_like_its_exemplar(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    _check_real_file("exemplar")
    exemplar = Image.open(DEMO / "reference.png").convert("RGB")
    gray = exemplar.convert("L").resize((77, 53))  # an odd size, a one-channel input
    out = refcolor.ExemplarColorizer.pretrained()(gray, exemplar)
    assert out.size == gray.size and out.mode == "RGB"
    rgb = np.asarray(out, dtype=np.float64)
    assert (rgb.max(axis=-1) - rgb.min(axis=-1)).mean() > 10  # coloured, not gray
    # The luminance is the input's own (full resolution, kept by the colorizer), up to 8-bit rounding.
    assert (_lightness(out) - _lightness(gray)).abs().mean() < 0.02

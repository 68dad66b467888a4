"""Issue 27's SCFT options for a correspondence by meaning: SCFT's match maps (refcolor.nn.SCFT
match_channels), the frozen EfficientNet-Lite0 features of the sketch and of the reference's
extracted sketch (SCFTColorizerConfig.frozen_features), a 16 x 16 lattice at 128 px, and the strong
warp in training (strong_warp_probability). Every option is off by default and the default model
is the one the bundled weights were trained as."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from refcolor.data.sketch import xdog
from refcolor.models.efficientnet_lite import weights_available
from refcolor.models.scft_colorizer import FrozenSketchFeatures, SCFTColorizer, SCFTColorizerConfig
from refcolor.nn.scft import SCFT
from refcolor.train.trainer import Trainer
from tests.training_helpers import tiny_config

needs_weights = pytest.mark.skipif(not weights_available(), reason="needs the extra refcolor[features]")
FROZEN = {"frozen_features": "efficientnet-lite0", "frozen_layers": ("stage3", "stage5")}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(B, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, H, W, generator=g) * 2 - 1, torch.rand(B, 3, H, W, generator=g) * 2 - 1


def frozen_model(**overrides) -> SCFTColorizer:
    torch.manual_seed(0)
    settings = {"image_size": 64, "encoder_widths": (4, 8, 8), "warped_reference_skip": True, **FROZEN}
    return SCFTColorizer.from_preset("small", **{**settings, **overrides})


# ------------------------------------------------------------------------------ defaults


def test_defaults_are_off_and_the_default_model_has_the_bundled_layout():
    cfg = SCFTColorizerConfig()
    assert (cfg.frozen_features, cfg.strong_warp_probability, cfg.frozen_channels) == ("none", 0.0, 0)
    model = SCFTColorizer.from_preset("small")
    assert model.frozen is None and model.scft.match_channels == 0
    assert not any(k.startswith("frozen.") for k in model.state_dict())
    dim = model.config.feature_dim
    assert model.scft.to_query.weight.shape == model.scft.to_key.weight.shape == (dim, dim)
    assert model.scft.scale == 1 / math.sqrt(dim)
    # A config written before these options existed (the bundled file's) still loads, with them off.
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith(("frozen", "strong"))}
    assert SCFTColorizerConfig.from_dict(old) == cfg


def test_the_bundled_weights_are_the_issue_27_model():
    """The bundled file: frozen features on, a 16 x 16 lattice, no coordinates, the frozen network
    loaded from the file and not trainable."""
    from refcolor.models.bundled import bundled_weights_path
    from refcolor.models.loading import load_model

    model = load_model(bundled_weights_path("scft")).model
    assert model.config.frozen_features == "efficientnet-lite0" and model.frozen is not None
    assert model.config.feature_size == (16, 16) and not model.config.coordinate_channels
    assert not any(p.requires_grad for p in model.frozen.parameters())
    sketch, reference = images(1, 128, 128)
    with torch.no_grad():
        assert model(sketch, reference).shape == (1, 3, 128, 128)


def test_scft_without_match_maps_is_the_paper_formula():
    torch.manual_seed(0)
    scft = SCFT(6)
    v_s, v_r = torch.randn(2, 6, 3, 4), torch.randn(2, 6, 2, 5)
    s, r = v_s.flatten(2).transpose(1, 2), v_r.flatten(2).transpose(1, 2)
    q, k, v = scft.to_query(s), scft.to_key(r), scft.to_value(r)
    expected = s + torch.softmax(q @ k.transpose(1, 2) / math.sqrt(6), -1) @ v
    out = scft(v_s, v_r, backend="reference")
    torch.testing.assert_close(out, expected.transpose(1, 2).reshape(2, 6, 3, 4))


# ------------------------------------------------------------------------------ SCFT match maps


def test_match_maps_enter_the_queries_and_keys_only():
    torch.manual_seed(0)
    dim, c = 6, 3
    scft = SCFT(dim, match_channels=c)
    assert scft.to_query.weight.shape == scft.to_key.weight.shape == (dim + c, dim + c)
    assert scft.to_value.weight.shape == (dim, dim) and scft.scale == 1 / math.sqrt(dim + c)
    v_s, v_r = torch.randn(2, dim, 3, 4), torch.randn(2, dim, 2, 5)
    m_s, m_r = torch.randn(2, c, 3, 4), torch.randn(2, c, 2, 5)
    out = scft(v_s, v_r, sketch_match=m_s, reference_match=m_r, return_triplet=True, return_attention=True)
    s = torch.cat([v_s, m_s], 1).flatten(2).transpose(1, 2)
    r = torch.cat([v_r, m_r], 1).flatten(2).transpose(1, 2)
    q, k = scft.to_query(s), scft.to_key(r)
    torch.testing.assert_close(out.queries, q)
    torch.testing.assert_close(out.keys, k)
    attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dim + c), -1)
    torch.testing.assert_close(out.attention, attention)
    values = scft.to_value(v_r.flatten(2).transpose(1, 2))
    expected = v_s.flatten(2).transpose(1, 2) + attention @ values
    torch.testing.assert_close(out.features, expected.transpose(1, 2).reshape(2, dim, 3, 4))
    # other match maps, other attention
    other = scft(v_s, v_r, sketch_match=-m_s, reference_match=m_r, return_attention=True)
    assert not torch.allclose(other.attention, out.attention)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({}, "'sketch_match' is required when match_channels = 3"),
        ({"sketch_match": torch.zeros(1, 3, 2, 2)}, "'reference_match' is required"),
        (
            {"sketch_match": torch.zeros(1, 2, 2, 2), "reference_match": torch.zeros(1, 3, 2, 2)},
            "'sketch_match' must have shape \\(B, match_channels, h, w\\) with match_channels = 3",
        ),
        (
            {"sketch_match": torch.zeros(1, 3, 2, 3), "reference_match": torch.zeros(1, 3, 2, 2)},
            "'sketch_match' must have .* and the h, w of \\(2, 2\\)",
        ),
    ],
)
def test_match_map_errors(kwargs, words):
    scft = SCFT(4, match_channels=3)
    with pytest.raises(ValueError, match=words):
        scft(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), **kwargs)


def test_match_maps_without_match_channels_and_bad_match_channels():
    with pytest.raises(ValueError, match="'sketch_match' must be None when match_channels = 0"):
        SCFT(4)(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), sketch_match=torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="'match_channels' must be an int >= 0, got -1"):
        SCFT(4, match_channels=-1)


# ------------------------------------------------------------------------------ the frozen features


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frozen_features": "vgg19"}, "frozen_features"),
        ({"frozen_layers": ()}, "frozen_layers"),
        ({"frozen_layers": ("head",)}, "frozen_layers"),
        ({"frozen_layers": ("stage5", "stage5")}, "frozen_layers' must be distinct"),
        ({"frozen_temperature": 0.0}, "frozen_temperature' must be a float > 0"),
        ({"strong_warp_probability": 1.5}, "strong_warp_probability' must be a float in \\[0, 1\\]"),
        ({"strong_warp_probability": True}, "strong_warp_probability"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCFTColorizerConfig.preset("small", **kwargs)


def test_config_round_trip_with_the_new_options():
    cfg = SCFTColorizerConfig.preset("small", strong_warp_probability=0.5, frozen_temperature=0.05, **FROZEN)
    back = SCFTColorizerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.frozen_layers == ("stage3", "stage5")
    assert cfg.frozen_channels == 40 + 112


def test_sixteen_by_sixteen_lattice_at_128px_with_four_levels():
    cfg = SCFTColorizerConfig.preset("small", image_size=128, encoder_widths=(8, 16, 32, 64), **FROZEN)
    assert cfg.feature_size == (16, 16) and cfg.downsampling == 8
    model = SCFTColorizer(cfg)
    sketch, reference = images(2, 128, 128)
    with torch.no_grad():
        out = model(sketch, reference, return_attention=True, return_triplet=True)
    assert out.image.shape == (2, 3, 128, 128) and out.attention.shape == (2, 256, 256)
    assert out.queries.shape == (2, 256, cfg.feature_dim + cfg.frozen_channels)


def test_frozen_features_are_stored_once_and_never_trained():
    model = frozen_model()
    frozen_keys = [k for k in model.state_dict() if k.startswith("frozen.")]
    assert len(frozen_keys) == len(FrozenSketchFeatures(FROZEN["frozen_layers"]).state_dict())
    assert not any("frozen" in k for k in model.state_dict() if not k.startswith("frozen."))
    assert all(not p.requires_grad for p in model.frozen.parameters())
    before = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    model.train()
    assert not model.frozen.training  # batch norm keeps its statistics
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    sketch, reference = images(2, 64, 64)
    for _ in range(2):
        optimizer.zero_grad()
        out = model(sketch, reference, return_triplet=True)
        (out.image.mean() + out.queries.mean() + out.keys.mean()).backward()
        optimizer.step()
    assert all(p.grad is None for p in model.frozen.parameters())
    assert model.scft.to_query.weight.grad is not None
    for k, v in model.frozen.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_frozen_block_starts_as_a_scaled_identity():
    model = frozen_model(frozen_temperature=0.05)
    dim, c = model.config.feature_dim, model.config.frozen_channels
    alpha = (math.sqrt(dim + c) / 0.05) ** 0.5
    for linear in (model.scft.to_query, model.scft.to_key):
        w = linear.weight
        torch.testing.assert_close(w[dim:, dim:], alpha * torch.eye(c))
        assert w[dim:, :dim].abs().max() == 0 and w[:dim, dim:].abs().max() == 0
        assert w[:dim, :dim].abs().max() > 0  # the learned block as nn.Linear draws it


def test_the_attention_starts_from_the_frozen_match_of_both_sketches():
    """With the learned block of W_q zeroed, the logits are exactly the frozen features' cosine /
    frozen_temperature: the sketch against the outline (XDoG) of the reference."""
    model = frozen_model().eval()
    with torch.no_grad():
        model.scft.to_query.weight[: model.config.feature_dim] = 0
    sketch, reference = images(2, 64, 64, seed=3)
    with torch.no_grad():
        out = model(sketch, reference, return_attention=True)
        size = out.feature_size
        f_s = model.frozen((sketch + 1) / 2, size).flatten(2).transpose(1, 2)
        f_r = model.frozen(xdog((reference + 1) / 2), size).flatten(2).transpose(1, 2)
    expected = torch.softmax(f_s @ f_r.transpose(1, 2) / model.config.frozen_temperature, -1)
    torch.testing.assert_close(out.attention, expected, atol=1e-5, rtol=1e-4)
    # the colour reference itself would give another match: the outline is what is compared
    with torch.no_grad():
        f_c = model.frozen(((reference + 1) / 2).mean(1, keepdim=True), size).flatten(2).transpose(1, 2)
    assert not torch.allclose(torch.softmax(f_s @ f_c.transpose(1, 2) / 0.03, -1), expected, atol=1e-3)


def test_frozen_features_are_unit_vectors_on_the_lattice():
    frozen = FrozenSketchFeatures(("stem", "stage6"))
    assert frozen.channels == 32 + 192 and len(frozen._blocks) == 15  # the head is not kept
    out = frozen(torch.rand(2, 1, 64, 64), (8, 8))
    assert out.shape == (2, 224, 8, 8) and not out.requires_grad
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 8, 8))


@needs_weights
def test_load_frozen_features_copies_the_imagenet_weights():
    from refcolor.models.efficientnet_lite import EfficientNetLite0

    model = frozen_model().load_frozen_features()
    full = EfficientNetLite0.from_pretrained().state_dict()
    for k, v in model.frozen.state_dict().items():
        assert torch.equal(v, full[k]), k


# ------------------------------------------------------------------------------ the strong warp in training


def _trainer(tmp_path, **model_overrides) -> Trainer:
    config = tiny_config(
        tmp_path,
        "scft",
        loss_weights={"perceptual": 0.0, "style": 0.0},
        model_overrides={"encoder_widths": [4, 8], **model_overrides},
    )
    return Trainer(config, log=lambda *a: None)


def test_strong_warp_probability_one_gives_strong_references_with_their_grid(tmp_path):
    plain = _trainer(tmp_path / "plain")
    strong = _trainer(tmp_path / "strong", strong_warp_probability=1.0)
    images = torch.stack([plain.dataset[i]["image"] for i in range(4)])
    mild = plain.task.prepare(images, torch.Generator().manual_seed(5))
    data = strong.task.prepare(images, torch.Generator().manual_seed(5))
    # the same target and sketch (drawn first), another reference
    assert torch.equal(mild["target"], data["target"]) and torch.equal(mild["sketch"], data["sketch"])
    assert not torch.allclose(mild["reference"], data["reference"], atol=0.05)
    # the grid is the reference's exact correspondence: it rebuilds the reference from the target
    rebuilt = F.grid_sample(data["target"], data["grid"], align_corners=True, padding_mode="border")
    torch.testing.assert_close(rebuilt, data["reference"], atol=1e-4, rtol=0)
    # flips and large moves: the strong grid moves content much farther than the mild one
    identity = F.affine_grid(torch.eye(2, 3).expand(4, 2, 3), (4, 3, 32, 32), align_corners=True)
    assert (data["grid"] - identity).abs().mean() > 3 * (mild["grid"] - identity).abs().mean()


def test_strong_warp_probability_mixes_and_zero_keeps_the_random_stream(tmp_path):
    plain = _trainer(tmp_path / "plain")
    images = torch.stack([plain.dataset[i]["image"] for i in range(8)])
    rng = torch.Generator().manual_seed(7)
    expected = plain.task.augment(images, torch.Generator().manual_seed(7))
    mild = plain.task.prepare(images, rng)
    torch.testing.assert_close(mild["reference"], expected["reference"] * 2 - 1)
    assert torch.equal(mild["grid"], expected["grid"])
    half = _trainer(tmp_path / "half", strong_warp_probability=0.5)
    data = half.task.prepare(images, torch.Generator().manual_seed(7))
    same = [torch.equal(data["grid"][b], mild["grid"][b]) for b in range(8)]
    assert 0 < sum(same) < 8, same  # this seed draws both kinds
    rebuilt = F.grid_sample(data["target"], data["grid"], align_corners=True, padding_mode="border")
    torch.testing.assert_close(rebuilt, data["reference"], atol=1e-4, rtol=0)
    logs = half.train_step(images, 0)
    assert all(math.isfinite(v) for v in logs.values()) and logs["triplet"] > 0


def test_frozen_features_without_their_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REFCOLOR_EFFICIENTNET_LITE0_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="frozen_features 'efficientnet-lite0' needs its ImageNet weights"):
        _trainer(tmp_path, **FROZEN)


@needs_weights
def test_training_with_frozen_features_loads_them_and_leaves_them_alone(tmp_path):
    from refcolor.models.efficientnet_lite import EfficientNetLite0

    trainer = _trainer(tmp_path, strong_warp_probability=0.5, **FROZEN)
    frozen = trainer.task.generator.frozen
    full = EfficientNetLite0.from_pretrained().state_dict()
    assert all(torch.equal(v, full[k]) for k, v in frozen.state_dict().items())
    images = torch.stack([trainer.dataset[i]["image"] for i in range(2)])
    before = trainer.task.generator.scft.to_query.weight.clone()
    for step in range(2):
        trainer.train_step(images, step)
    assert all(torch.equal(v, full[k]) for k, v in frozen.state_dict().items())
    assert not torch.equal(before, trainer.task.generator.scft.to_query.weight)

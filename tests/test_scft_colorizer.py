"""refcolor.models.SCFTColorizer: the paper preset's 992-channel 16x16 features, the small preset's
forward / backward, output range, triplet and attention outputs, config round trips, input checks,
and a few Adam steps that fit a fixed batch."""

from __future__ import annotations

import json

import pytest
import torch

from refcolor.losses import scft_triplet_loss
from refcolor.models.scft_colorizer import (
    SCFTColorizer,
    SCFTColorizerConfig,
    SCFTColorizerOutput,
    count_parameters,
)


def images(B, H, W, seed=0, ref_size=None):
    g = torch.Generator().manual_seed(seed)
    sketch = torch.rand(B, 1, H, W, generator=g) * 2 - 1
    rh, rw = ref_size or (H, W)
    reference = torch.rand(B, 3, rh, rw, generator=g) * 2 - 1
    return sketch, reference


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is as fast, and keeps the timings steady on a busy
    2-core machine (two OpenMP threads competing with other processes ran the fit test 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return SCFTColorizer.from_preset("small")


def test_paper_preset_992_channels_at_16x16():
    torch.manual_seed(0)
    model = SCFTColorizer.from_preset("paper")
    cfg = model.config
    assert cfg.image_size == 256 and cfg.feature_dim == 992 and cfg.feature_size == (16, 16)
    assert model.scft.dim == 992
    # encoders only (the full 256x256 decoder pass is left to the small preset for speed)
    with torch.no_grad():
        v_s, v_r = model.encode(*images(1, 256, 256))
    assert v_s.shape == (1, 992, 16, 16) and v_r.shape == (1, 992, 16, 16)
    n = count_parameters(model)
    assert 70_000_000 < n < 90_000_000, n  # 80.4M, 71M of them in the four 992-channel residual blocks
    # 10 conv layers per encoder: 16,16,32,32,64,64,128,128,256,256 (stride 2 on levels 2..5)
    widths = [layer[0].out_channels for level in model.sketch_encoder.levels for layer in level]
    assert widths == [16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    strides = [layer[0].stride[0] for level in model.sketch_encoder.levels for layer in level]
    assert strides == [1, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    assert model.sketch_encoder.levels[0][0][0].in_channels == 1
    assert model.reference_encoder.levels[0][0][0].in_channels == 3


def test_encoder_concatenates_pooled_levels(small):
    """V = [f^1; ...; f^L] with each f^l average-pooled to the last level's size."""
    sketch, _ = images(2, 64, 64, seed=1)
    acts, x = [], sketch
    with torch.no_grad():
        for level in small.sketch_encoder.levels:
            for layer in level:
                x = layer(x)
                acts.append(x)
        expected = torch.cat([torch.nn.functional.avg_pool2d(a, a.shape[-1] // 8) for a in acts], dim=1)
        v_s, _ = small.sketch_encoder(sketch)
    assert v_s.shape == (2, 120, 8, 8)
    torch.testing.assert_close(v_s, expected)


def test_small_forward_backward_and_range(small):
    cfg = small.config
    assert (cfg.image_size, cfg.feature_dim, cfg.feature_size, cfg.num_res_blocks) == (64, 120, (8, 8), 2)
    sketch, reference = images(2, 64, 64)
    out = small(sketch, reference)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in small.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # both encoders, SCFT and decoder get gradient
    for part in (small.sketch_encoder, small.reference_encoder, small.scft, small.res_blocks, small.decoder):
        assert sum(p.grad.abs().sum() for p in part.parameters()) > 0
    small.zero_grad(set_to_none=True)


def test_other_sizes_and_reference_size(small):
    sketch, reference = images(1, 32, 48, ref_size=(64, 40))
    out = small(sketch, reference, return_triplet=True)
    assert out.image.shape == (1, 3, 32, 48)
    assert out.feature_size == (4, 6) and out.reference_feature_size == (8, 5)
    assert out.queries.shape == (1, 24, 120) and out.keys.shape == (1, 40, 120)


def test_triplet_and_attention_outputs(small):
    sketch, reference = images(2, 64, 64, seed=3)
    plain = small(sketch, reference)
    out = small(sketch, reference, return_triplet=True)
    assert isinstance(out, SCFTColorizerOutput)
    assert out.queries.shape == (2, 64, 120) and out.keys.shape == (2, 64, 120)
    assert out.attention is None and out.feature_size == (8, 8)
    torch.testing.assert_close(out.image, plain)
    both = small(sketch, reference, return_triplet=True, return_attention=True)
    assert both.attention.shape == (2, 64, 64)
    torch.testing.assert_close(both.attention.sum(-1), torch.ones(2, 64), atol=1e-5, rtol=0)
    only_att = small(sketch, reference, return_attention=True)
    assert only_att.queries is None and only_att.keys is None and only_att.attention is not None
    # the queries / keys feed the triplet loss, and its gradient reaches both encoders
    positive = torch.arange(64).expand(2, 64)
    loss = scft_triplet_loss(out.queries, out.keys, positive, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in small.reference_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in small.sketch_encoder.parameters())
    small.zero_grad(set_to_none=True)


def test_config_round_trip_and_presets():
    for name in ("paper", "small"):
        cfg = SCFTColorizerConfig.preset(name)
        text = json.dumps(cfg.to_dict())
        back = SCFTColorizerConfig.from_dict(json.loads(text))
        assert back == cfg and isinstance(back.encoder_widths, tuple)
        assert SCFTColorizerConfig.from_json(cfg.to_json()) == cfg
    assert set(SCFTColorizerConfig.presets) == {"paper", "small"}
    cfg = SCFTColorizerConfig.preset("small", image_size=128, norm="batch", num_res_blocks=1)
    assert (cfg.image_size, cfg.norm, cfg.num_res_blocks, cfg.feature_size) == (128, "batch", 1, (16, 16))
    assert SCFTColorizerConfig.presets["small"].image_size == 64  # presets untouched
    model = SCFTColorizer(cfg)
    assert model.config is cfg and len(model.res_blocks) == 1
    # a model rebuilt from the JSON config loads the weights of the first
    twin = SCFTColorizer(SCFTColorizerConfig.from_json(cfg.to_json()))
    twin.load_state_dict(model.state_dict())
    custom = SCFTColorizerConfig(image_size=24, encoder_widths=(4, 6), convs_per_level=3, num_res_blocks=0, norm="none")
    assert custom.feature_dim == 30 and custom.feature_size == (12, 12)
    assert SCFTColorizer(custom)(*images(1, 24, 24)).shape == (1, 3, 24, 24)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoder_widths": ()}, "encoder_widths"),
        ({"encoder_widths": (8, 0)}, "encoder_widths"),
        ({"convs_per_level": 0}, "convs_per_level"),
        ({"num_res_blocks": -1}, "num_res_blocks"),
        ({"norm": "layer"}, "norm"),
        ({"image_size": 60}, "image_size"),
        ({"negative_slope": 1.5}, "negative_slope"),
        ({"coordinate_channels": 1}, "coordinate_channels"),
        ({"warped_reference_skip": "yes"}, "warped_reference_skip"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCFTColorizerConfig.preset("small", **kwargs)


def test_bad_config_names():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        SCFTColorizer.from_preset("huge")
    with pytest.raises(ValueError, match="unknown keys \\['depth'\\]"):
        SCFTColorizerConfig.from_dict({"depth": 3})
    with pytest.raises(TypeError, match="SCFTColorizerConfig"):
        SCFTColorizer({"image_size": 64})


def test_bad_inputs(small):
    sketch, reference = images(2, 64, 64)
    cases = [
        (
            (sketch.repeat(1, 3, 1, 1), reference),
            ValueError,
            r"'sketch' must have shape \(B, 1, H, W\), got \(2, 3, 64, 64\)",
        ),
        ((sketch, reference[:, :1]), ValueError, r"'reference' must have shape \(B, 3, H, W\), got \(2, 1, 64, 64\)"),
        ((sketch[0], reference), ValueError, r"'sketch' must have shape \(B, 1, H, W\), got \(1, 64, 64\)"),
        (
            (sketch[:, :, :60], reference),
            ValueError,
            r"'sketch' must have H and W divisible by 8.*got \(2, 1, 60, 64\)",
        ),
        ((sketch, reference[:, :, :, :36]), ValueError, r"'reference' must have H and W divisible by 8"),
        ((sketch, reference[:1]), ValueError, "batch size of 'sketch'"),
        ((sketch, reference.double()), TypeError, "dtype of 'sketch'"),
        ((sketch.to(torch.uint8), reference), TypeError, "'sketch' must be a floating-point tensor"),
        ((sketch.numpy(), reference), TypeError, "'sketch' must be a torch.Tensor"),
        ((sketch[:0], reference[:0]), ValueError, "batch size >= 1"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            small(*args)
    with pytest.raises(ValueError, match="'reference' must have shape"):
        small.encode(sketch, sketch)


def test_learns_a_fixed_batch():
    """30 Adam steps on one (sketch, reference, target) batch cut the L1 loss clearly."""
    torch.manual_seed(0)
    model = SCFTColorizer.from_preset("small")
    g = torch.Generator().manual_seed(5)
    # 8x8 blocks of random colours in [-0.8, 0.8]; the sketch is their grey, the reference a mirror image
    target = (torch.rand(2, 3, 8, 8, generator=g) * 1.6 - 0.8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    sketch = target.mean(1, keepdim=True)
    reference = torch.flip(target, dims=[-1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(30):
        loss = (model(sketch, reference) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert max(losses[-3:]) < 0.4 * losses[0], losses  # about 0.43 -> 0.09 here


# ----------------------------------------------------------------- value checks that can fail


def test_samples_are_independent_in_a_batch(small):
    """Instance norm and per-sample attention: a sample's output does not depend on the others."""
    sketch, reference = images(3, 32, 32, seed=7)
    with torch.no_grad():
        batch = small(sketch, reference)
        for b in range(3):
            torch.testing.assert_close(
                batch[b : b + 1], small(sketch[b : b + 1], reference[b : b + 1]), atol=1e-5, rtol=1e-5
            )
        swapped = small(sketch, reference.flip(0))
    assert not torch.allclose(swapped[0], batch[0], atol=1e-4)  # the reference matters


def test_zero_value_projection_leaves_only_the_sketch_path():
    """SCFT's residual: with W_v = 0, v* = v_s, so the image no longer depends on the reference."""
    torch.manual_seed(1)
    model = SCFTColorizer.from_preset("small").eval()
    with torch.no_grad():
        model.scft.to_value.weight.zero_()
        sketch, reference = images(1, 32, 32, seed=8)
        _, other = images(1, 32, 32, seed=9)
        v_s, v_r = model.encode(sketch, reference)
        torch.testing.assert_close(model.scft(v_s, v_r), v_s)
        torch.testing.assert_close(model(sketch, reference), model(sketch, other))


def test_residual_block_is_identity_plus_body():
    """x + body(x); with the last norm's affine scale and shift at 0 the block is the identity."""
    from refcolor.models.scft_colorizer import ResidualBlock

    torch.manual_seed(2)
    block = ResidualBlock(6)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.body(x))
        block.body[4].weight.zero_()
        block.body[4].bias.zero_()
        torch.testing.assert_close(block(x), x)


def test_triplet_queries_and_keys_are_row_major_cells_of_the_encoder_maps(small):
    """queries[b, r * w + c] = W_q v_s[b, :, r, c] (the cell order tps_correspondence indexes)."""
    sketch, reference = images(2, 32, 48, seed=10, ref_size=(40, 24))
    with torch.no_grad():
        out = small(sketch, reference, return_triplet=True)
        v_s, v_r = small.encode(sketch, reference)
    Wq, Wk = small.scft.to_query.weight, small.scft.to_key.weight
    h, w = out.feature_size
    for r in range(h):
        for c in range(w):
            torch.testing.assert_close(out.queries[:, r * w + c], v_s[:, :, r, c] @ Wq.T)
    h, w = out.reference_feature_size
    assert (h, w) == (5, 3)
    for r in range(h):
        for c in range(w):
            torch.testing.assert_close(out.keys[:, r * w + c], v_r[:, :, r, c] @ Wk.T)


def test_warped_reference_skip_moves_the_reference_patches_the_attention_points_at():
    """With attention one-hot on a permutation of the cells, the skip is the reference with its p x p
    patches permuted the same way: sketch cell n shows reference cell perm[n]'s pixels."""
    model = SCFTColorizer.from_preset("small", warped_reference_skip=True)
    p = model.config.downsampling  # 8 for the small preset's four levels
    _, reference = images(2, 2 * p, 3 * p, seed=3)
    perm = torch.tensor([4, 0, 5, 1, 3, 2])
    attention = torch.eye(6)[perm].expand(2, 6, 6)
    warped = model._warp_reference(reference, attention, (2, 3))
    for n, m in enumerate(perm.tolist()):
        (ny, nx), (my, mx) = divmod(n, 3), divmod(m, 3)
        expected = reference[:, :, my * p : (my + 1) * p, mx * p : (mx + 1) * p]
        torch.testing.assert_close(warped[:, :, ny * p : (ny + 1) * p, nx * p : (nx + 1) * p], expected)


def test_warped_reference_skip_reaches_the_output_and_trains_the_attention():
    torch.manual_seed(0)
    model = SCFTColorizer.from_preset("small", warped_reference_skip=True, coordinate_channels=True)
    sketch, reference = images(2, 64, 64, seed=4)
    out = model(sketch, reference, return_triplet=True)
    assert out.attention is None and out.queries.shape == (2, 64, model.config.feature_dim)
    # The L1 loss alone reaches W_q and W_k only through the warped pixels: the SCFT features'
    # residual path carries no gradient to them when W_v is zero.
    with torch.no_grad():
        model.scft.to_value.weight.zero_()
    model(sketch, reference).abs().mean().backward()
    assert model.scft.to_query.weight.grad.abs().sum() > 0
    assert model.scft.to_key.weight.grad.abs().sum() > 0
    # ... and the skip changes the output: another reference gives another image.
    with torch.no_grad():
        other = model(sketch, reference.flip(-1))
        assert (other - model(sketch, reference)).abs().max() > 1e-3


def test_coordinate_channels_tell_flat_cells_apart():
    """A blank sketch gives every cell the same features without coordinates (up to the border's
    zero padding), and distinct ones with them."""
    blank = torch.ones(1, 1, 64, 64)
    for coords, distinct in ((False, False), (True, True)):
        torch.manual_seed(0)
        model = SCFTColorizer.from_preset("small", coordinate_channels=coords).eval()
        v_s, _ = model.encode(blank, torch.zeros(1, 3, 64, 64))
        inner = v_s[0, :, 2:6, 2:6].flatten(1)  # the cells away from the padded border
        spread = (inner - inner.mean(1, keepdim=True)).abs().max()
        assert (spread > 1e-3) == distinct, (coords, float(spread))
    assert model.sketch_encoder.levels[0][0][0].in_channels == 3
    assert model.reference_encoder.levels[0][0][0].in_channels == 5

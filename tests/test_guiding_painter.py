"""GuidingPainter (issue 7 items 1-4): straight-through Gumbel, temperature schedule, the U-Nets,
the bundled model (f, h, g) and its extra losses."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from refcolor.models.guiding_painter import (
    ColorizationUNet,
    GuidingPainter,
    GuidingPainterConfig,
    SegmentationUNet,
    gumbel_temperature,
    hint_consistency_loss,
    match_hint_means,
    smoothness_loss,
    straight_through_gumbel_softmax,
)
from refcolor.nn import HintGenerator
from refcolor.ops.segment_hint_colors import segment_hint_colors_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------- straight-through Gumbel


def test_gumbel_forward_is_one_hot_of_argmax():
    logits = torch.randn(2, 7, 5, 6, generator=_gen(0))
    y = straight_through_gumbel_softmax(logits, 0.5, generator=_gen(1))
    assert y.shape == logits.shape
    assert torch.all((y == 0) | (y == 1))
    assert torch.equal(y.sum(dim=1), torch.ones(2, 5, 6))
    soft = straight_through_gumbel_softmax(logits, 0.5, generator=_gen(1), hard=False)
    assert torch.allclose(soft.sum(dim=1), torch.ones(2, 5, 6), atol=1e-6)
    assert torch.equal(y.argmax(dim=1), soft.argmax(dim=1))


def test_gumbel_gradient_is_the_soft_samples():
    logits = torch.randn(2, 5, 4, 4, generator=_gen(2), dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 5, 4, 4, generator=_gen(3), dtype=torch.float64)
    (straight_through_gumbel_softmax(logits, 0.7, generator=_gen(4)) * weights).sum().backward()
    grad_hard = logits.grad.clone()
    logits.grad = None
    (straight_through_gumbel_softmax(logits, 0.7, generator=_gen(4), hard=False) * weights).sum().backward()
    assert grad_hard.abs().sum() > 0
    assert torch.allclose(grad_hard, logits.grad, atol=1e-12)


def test_gumbel_reproducible_with_generator_and_other_dim():
    logits = torch.randn(3, 4, 10, generator=_gen(5))
    a = straight_through_gumbel_softmax(logits, 1.0, dim=-1, generator=_gen(6), hard=False)
    b = straight_through_gumbel_softmax(logits, 1.0, dim=-1, generator=_gen(6), hard=False)
    c = straight_through_gumbel_softmax(logits, 1.0, dim=-1, generator=_gen(7), hard=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.sum(dim=-1), torch.ones(3, 4), atol=1e-6)
    with pytest.raises(ValueError, match="tau"):
        straight_through_gumbel_softmax(logits, 0.0)


# Chi-square critical value for 4 degrees of freedom at significance 0.001.
CHI2_4_DOF_P001 = 18.467


@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_gumbel_argmax_frequencies_match_softmax_of_logits(tau):
    """Gumbel-max: argmax(logits + g) is distributed as softmax(logits), whatever tau. 40 000 draws
    of 5 classes at a fixed seed; a sign error in the noise (or noise not of the Gumbel law) fails."""
    logits = torch.tensor([1.5, 0.5, 0.0, -0.5, -2.0])
    n = 40_000
    draws = logits.view(1, 5, 1).expand(1, 5, n).contiguous()
    y = straight_through_gumbel_softmax(draws, tau, generator=_gen(20))
    observed = y.sum(dim=(0, 2)).double()
    expected = torch.softmax(logits.double(), 0) * n
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_4_DOF_P001, (chi2, observed.tolist(), expected.tolist())
    # The negated noise (-g) picks the top class about 2.5x less often than softmax: far outside.
    u = torch.rand(draws.shape, generator=_gen(20))
    flipped = torch.log(-torch.log(u))
    wrong = F.one_hot((draws + flipped).argmax(dim=1), 5).sum(dim=(0, 1)).double()
    assert ((wrong - expected) ** 2 / expected).sum().item() > 100 * CHI2_4_DOF_P001


def test_gumbel_soft_sample_is_the_tempered_softmax_of_the_noisy_logits():
    """soft = softmax((logits + g) / tau) with g = -log(-log(u)) from the generator's uniforms."""
    logits = torch.randn(2, 4, 3, generator=_gen(21), dtype=torch.float64)
    u = torch.rand(logits.shape, generator=_gen(22), dtype=torch.float32).double()
    expected = torch.softmax((logits - torch.log(-torch.log(u))) / 0.5, dim=1)
    soft = straight_through_gumbel_softmax(logits, 0.5, generator=_gen(22), hard=False)
    torch.testing.assert_close(soft, expected)


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
def test_temperature_schedule(schedule):
    assert gumbel_temperature(0, 100, schedule=schedule) == pytest.approx(1.0)
    assert gumbel_temperature(100, 100, schedule=schedule) == pytest.approx(0.1)
    assert gumbel_temperature(1000, 100, schedule=schedule) == pytest.approx(0.1)
    values = [gumbel_temperature(s, 100, schedule=schedule) for s in range(0, 101, 10)]
    assert all(x > y for x, y in itertools.pairwise(values))
    mid = gumbel_temperature(50, 100, schedule=schedule)
    assert mid == pytest.approx(0.55 if schedule == "linear" else 0.1**0.5)
    with pytest.raises(ValueError, match="schedule"):
        gumbel_temperature(0, 10, schedule="cosine")


# ----------------------------------------------------------------- U-Nets and config


def test_small_preset_shapes_and_segments():
    cfg = GuidingPainterConfig.preset("small")
    f = SegmentationUNet(cfg.num_segments, cfg.seg_base_channels, cfg.depth, cfg.max_channels, cfg.norm)
    g = ColorizationUNet(cfg.num_segments, cfg.color_base_channels, cfg.depth, cfg.max_channels, cfg.norm)
    sketch = torch.rand(1, 1, 64, 64, generator=_gen(8))
    logits = f(sketch)
    assert logits.shape == (1, 30, 64, 64)
    seg = f.segments(sketch, tau=1.0, generator=_gen(9))
    assert seg.shape == (1, 30, 64, 64) and torch.equal(seg.sum(dim=1), torch.ones(1, 64, 64))
    assert seg.requires_grad
    f.eval()
    with torch.no_grad():
        hard = f.segments(sketch, tau=1.0)
        assert torch.equal(hard.argmax(dim=1), f(sketch).argmax(dim=1))
    out = g(sketch, torch.zeros(1, 4, 64, 64), seg.detach())
    assert out.shape == (1, 3, 64, 64) and out.abs().max() <= 1
    assert 100_000 < _count(f) < 2_000_000 and 100_000 < _count(g) < 2_000_000


def test_paper_preset_builds():
    model = GuidingPainter(GuidingPainterConfig.preset("paper"))
    assert model.config.image_size == 256 and model.num_segments == 30
    assert model.hint_generator.stop_prob == 0.125
    assert model.segmentation.unet.widths == [64, 128, 256, 512, 1024]
    assert model.colorization.unet.inc[0].in_channels == 1 + 3 + 1 + 30
    assert _count(model.segmentation) == 31_038_366
    assert _count(model.colorization) == 31_056_195


def test_config_roundtrip_and_errors():
    cfg = GuidingPainterConfig.preset("small", num_segments=12)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert GuidingPainterConfig.from_dict(data) == cfg
    assert cfg.temperature(0, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown preset"):
        GuidingPainterConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown keys"):
        GuidingPainterConfig.from_dict({**data, "widht": 3})
    with pytest.raises(ValueError, match="image_size"):
        GuidingPainterConfig.preset("small", image_size=60)


def test_input_validation():
    model = GuidingPainter(GuidingPainterConfig.preset("small", seg_base_channels=4, color_base_channels=4))
    sketch, target = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"'sketch' must have shape \(B, 1, H, W\)"):
        model(torch.rand(1, 3, 16, 16), target, tau=1.0)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        model(torch.rand(1, 1, 20, 16), torch.rand(1, 3, 20, 16), tau=1.0)
    with pytest.raises(ValueError, match="'target'"):
        model(sketch, torch.rand(1, 3, 8, 8), tau=1.0)
    with pytest.raises(ValueError, match="'target'"):
        model(sketch, torch.rand(1, 1, 16, 16), tau=1.0)
    with pytest.raises(TypeError, match="floating-point"):
        model(sketch.to(torch.uint8), target, tau=1.0)
    with pytest.raises(ValueError, match="'colors'"):
        model.colorize(sketch, torch.rand(2, 4))


# ----------------------------------------------------------------- GuidingPainter


def test_forward_backward_small_preset():
    torch.manual_seed(0)
    model = GuidingPainter(GuidingPainterConfig.preset("small"))
    assert isinstance(model.hint_generator, HintGenerator)
    sketch = torch.rand(1, 1, 64, 64, generator=_gen(10))
    target = torch.rand(1, 3, 64, 64, generator=_gen(11)) * 2 - 1
    out = model(sketch, target, tau=0.5, generator=_gen(12))
    output, segments, logits, hints = out
    assert output.shape == (1, 3, 64, 64) and segments.shape == logits.shape == (1, 30, 64, 64)
    assert hints.shape == (1, 4, 64, 64)
    loss = F.l1_loss(output, target) + hint_consistency_loss(segments, target) + smoothness_loss(logits)
    loss.backward()
    seg_grad = sum(p.grad.abs().sum() for p in model.segmentation.parameters() if p.grad is not None)
    col_grad = sum(p.grad.abs().sum() for p in model.colorization.parameters() if p.grad is not None)
    assert seg_grad > 0 and col_grad > 0
    # Same generator -> same segments and Nh.
    with torch.no_grad():
        again = model(sketch, target, tau=0.5, generator=_gen(12))
    assert torch.equal(again.segments, segments.detach()) and torch.equal(again.hints, hints.detach())


def _tiny_model(num_segments: int = 6) -> GuidingPainter:
    cfg = GuidingPainterConfig.preset(
        "small", num_segments=num_segments, image_size=16, seg_base_channels=4, color_base_channels=8, depth=2
    )
    torch.manual_seed(0)
    return GuidingPainter(cfg)


def test_regions_and_colorize():
    model = _tiny_model().eval()
    sketch = torch.rand(2, 1, 16, 16, generator=_gen(13))
    regions = model.regions(sketch)
    assert regions.shape == (2, 16, 16) and regions.dtype == torch.int64
    assert torch.equal(regions, model.segmentation(sketch).argmax(dim=1))
    colors = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    out = model.colorize(sketch, colors)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1 and not out.requires_grad
    # colorize == g(sketch, user hints of the first 3 regions, argmax segments)
    segments = F.one_hot(regions, 6).permute(0, 3, 1, 2).float()
    hints = torch.zeros(2, 4, 16, 16)
    for k in range(3):
        hints[:, :3] += colors[k][None, :, None, None] * segments[:, k : k + 1]
        hints[:, 3:] += segments[:, k : k + 1]
    with torch.no_grad():
        expected = model.colorization(sketch, hints, segments)
    assert torch.allclose(out, expected, atol=1e-6)
    # No hints at all is allowed; eval-mode forward uses the argmax and needs num_hints.
    assert model.colorize(sketch, colors, num_hints=0).shape == (2, 3, 16, 16)
    with torch.no_grad():
        res = model(sketch, torch.rand(2, 3, 16, 16), tau=1.0, num_hints=2)
    assert torch.equal(res.segments.argmax(dim=1), regions)


# ----------------------------------------------------------------- losses


def test_hint_consistency_loss_zero_for_constant_regions():
    labels = torch.randint(0, 5, (2, 8, 8), generator=_gen(14))
    segments = F.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    palette = torch.rand(2, 5, 3, generator=_gen(15)) * 2 - 1
    target = torch.einsum("bkc,bkhw->bchw", palette, segments)
    assert hint_consistency_loss(segments, target).item() == pytest.approx(0.0, abs=1e-10)
    noisy = target + 0.1 * torch.randn(target.shape, generator=_gen(16))
    segments.requires_grad_(True)
    loss = hint_consistency_loss(segments, noisy)
    assert loss.item() > 1e-4
    loss.backward()
    assert segments.grad.abs().sum() > 0


def test_smoothness_loss():
    assert smoothness_loss(torch.full((2, 4, 6, 6), 3.0)).item() == 0.0
    assert smoothness_loss(torch.randn(1, 3, 1, 1)).item() == 0.0
    checker = ((torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2).float().expand(1, 2, 6, 6)
    value = smoothness_loss(checker).item()
    # horizontal and vertical neighbours differ by 1, diagonal ones by 0: 30 + 30 ones of 110 pairs
    assert value == pytest.approx(60 / 110)
    ramp = torch.arange(5.0).expand(1, 1, 5, 5)
    assert smoothness_loss(ramp).item() == pytest.approx((20 * 1 + 20 * 0 + 16 + 16) / 72)


def test_it_learns():
    model = _tiny_model(num_segments=6).train()
    # A sketch with a vertical line and a disc; the target paints the three parts in flat colours.
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    disc = ((yy - 10) ** 2 + (xx - 11) ** 2 < 12).float()
    left = (xx < 6).float()
    sketch = torch.ones(2, 1, 16, 16)
    sketch[:, :, :, 6] = 0
    sketch[0, 0] -= disc - disc * F.max_pool2d(1 - disc[None, None], 3, 1, 1)[0, 0]  # disc outline
    palette = torch.tensor([[0.8, -0.5, -0.6], [-0.7, 0.2, 0.9], [0.1, 0.9, -0.2]])
    labels = torch.where(left > 0, 0, 1).long().expand(2, 16, 16).clone()
    labels[0][disc > 0] = 2
    target = palette[labels].permute(0, 3, 1, 2).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step(i: int, train: bool) -> float:
        out = model(sketch, target, tau=gumbel_temperature(i, 30), num_hints=3, generator=_gen(100 + i))
        loss = F.l1_loss(out.output, target) + hint_consistency_loss(out.segments, target)
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    losses = [step(i, True) for i in range(30)]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


def test_priority_bias_starts_low_channels_ahead():
    plain = GuidingPainter(GuidingPainterConfig.preset("small", priority_bias=0.0))
    assert GuidingPainterConfig.preset("paper").priority_bias == 0.0  # the paper's init
    biased = GuidingPainter(GuidingPainterConfig.preset("small"))
    bias = biased.segmentation.unet.outc.bias.detach()
    assert torch.allclose(bias, -0.1 * torch.arange(30, dtype=torch.float32))
    assert not torch.allclose(plain.segmentation.unet.outc.bias.detach(), bias)


# ----------------------------------------------------------------- known answers with set weights


def _pass_through(
    unet,
    channel_map: dict[int, list[tuple[int, float]]],
    outputs: dict[int, list[tuple[int, float]]],
    out_bias: dict[int, float] | None = None,
) -> None:
    """Set a depth-1, norm-free UNet to a pointwise map: the first conv's centre taps send input
    channels to hidden ones (channel_map[hidden] = [(input, weight)]), the hidden channels go
    unchanged through the second conv, the decoder (from the skip; the deeper path is zeroed) and
    the 1x1 output conv combines them (outputs[out] = [(hidden, weight)]). With ReLUs in between,
    hidden channels carry the positive parts only."""
    with torch.no_grad():
        for p in unet.parameters():
            p.zero_()
        first, second = unet.inc[0], unet.inc[3]
        for hidden, taps in channel_map.items():
            for source, weight in taps:
                first.weight[hidden, source, 1, 1] = weight
            second.weight[hidden, hidden, 1, 1] = 1
            unet.dec[0][0].weight[hidden, hidden, 1, 1] = 1  # the skip is the first half of the concat
            unet.dec[0][3].weight[hidden, hidden, 1, 1] = 1
        for out, taps in outputs.items():
            for hidden, weight in taps:
                unet.outc.weight[out, hidden, 0, 0] = weight
        for out, bias in (out_bias or {}).items():
            unet.outc.bias[out] = bias


def _known_model() -> GuidingPainter:
    """f: region 0 where the sketch is white (> 0.5), region 1 on the dark lines. g: tanh of the
    hint colour (0 where no hint); it ignores the sketch, the mask and the segments."""
    cfg = GuidingPainterConfig(
        num_segments=2, image_size=8, seg_base_channels=8, color_base_channels=8, depth=1, max_channels=16, norm="none"
    )
    model = GuidingPainter(cfg).eval()
    _pass_through(model.segmentation.unet, {0: [(0, 1.0)]}, {0: [(0, 2.0)]}, {0: -1.0})
    # hints are input channels 1..3 (after the sketch); +c and -c on two hidden channels each.
    channels = {2 * c: [(1 + c, 1.0)] for c in range(3)} | {2 * c + 1: [(1 + c, -1.0)] for c in range(3)}
    _pass_through(model.colorization.unet, channels, {c: [(2 * c, 1.0), (2 * c + 1, -1.0)] for c in range(3)})
    return model


def _stroke_sketch() -> torch.Tensor:
    sketch = torch.ones(2, 1, 8, 8)
    sketch[0, 0, :, 3] = 0  # a vertical line
    sketch[1, 0, 5, :] = 0  # a horizontal line
    return sketch


def test_colorize_known_answer_with_set_weights():
    model, sketch = _known_model(), _stroke_sketch()
    dark = sketch < 0.5
    assert torch.equal(model.regions(sketch), dark.squeeze(1).long())
    colors = torch.tensor([[0.5, -0.25, 0.75], [-0.6, 0.3, 0.1]])
    out = model.colorize(sketch, colors)
    expected = torch.where(dark, colors[1].view(1, 3, 1, 1), colors[0].view(1, 3, 1, 1)).tanh()
    torch.testing.assert_close(out, expected)
    # One hint: the lines (region 1) get none; per-sample colours go to their own sample.
    torch.testing.assert_close(model.colorize(sketch, colors, num_hints=1), torch.where(dark, 0.0, expected))
    per_sample = torch.stack([colors, colors.flip(0)])
    out = model.colorize(sketch, per_sample)
    torch.testing.assert_close(out[0], expected[0])
    torch.testing.assert_close(out[1], torch.where(dark[1], colors[0].view(3, 1, 1), colors[1].view(3, 1, 1)).tanh())


def test_forward_known_answer_hints_are_region_means_of_the_target():
    model, sketch = _known_model(), _stroke_sketch()
    target = torch.rand(2, 3, 8, 8, generator=_gen(30)) * 2 - 1
    dark = (sketch < 0.5).double()
    with torch.no_grad():
        out = model(sketch, target, tau=None, num_hints=torch.tensor([2, 1]))
    for b in range(2):
        masks = [1 - dark[b], dark[b]]
        means = [(target[b].double() * m).sum(dim=(1, 2)) / m.sum() for m in masks]
        hinted = means[0].view(3, 1, 1) * masks[0] + (means[1].view(3, 1, 1) * masks[1] if b == 0 else 0)
        torch.testing.assert_close(out.output[b].double(), hinted.tanh(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out.hints[b, 3].double(), (masks[0] + (masks[1] if b == 0 else 0))[0])


def test_training_forward_gradients_reach_every_parameter():
    model = _tiny_model().train()
    sketch = torch.rand(2, 1, 16, 16, generator=_gen(31))
    target = torch.rand(2, 3, 16, 16, generator=_gen(32)) * 2 - 1
    out = model(sketch, target, tau=0.7, num_hints=torch.tensor([6, 4]), generator=_gen(33))
    loss = F.l1_loss(out.output, target) + hint_consistency_loss(out.segments, target) + smoothness_loss(out.logits)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_coordinate_channels_let_the_segmentation_tell_flat_areas_apart():
    """On a blank sketch the plain segmentation gives two interior pixels a multiple of the U-Net's
    stride (8) apart the same logits (its up-convolutions repeat with that period); with coordinate
    channels they differ. The config round-trips the option."""
    blank = torch.ones(1, 1, 256, 256)  # the centre is beyond the reach of the zero padding
    for coords in (False, True):
        torch.manual_seed(0)
        cfg = GuidingPainterConfig.preset("small", image_size=256, coordinate_channels=coords)
        model = GuidingPainter(GuidingPainterConfig.from_dict(cfg.to_dict())).eval()
        with torch.no_grad():
            logits = model.segmentation(blank)[0]
        difference = float((logits[:, 120:128, 120:128] - logits[:, 120:128, 136:144]).abs().max())
        assert (difference > 1e-4) == coords, (coords, difference)
    with pytest.raises(ValueError, match="coordinate_channels must be a bool"):
        GuidingPainterConfig.preset("small", coordinate_channels="yes")


def test_region_usage_loss_is_a_hinge_on_the_effective_number_of_regions():
    from refcolor.models.guiding_painter import USAGE_EPS, region_usage_loss

    nc = 8
    # The argmax gives four channels a quarter of the image each: 4 effective regions (up to the
    # smoothing), whatever the softmax's spread.
    channel = torch.arange(4).repeat_interleave(16).view(1, 8, 8)
    one_hot = torch.nn.functional.one_hot(channel, nc).permute(0, 3, 1, 2).float()
    shares = (torch.tensor([0.25] * 4 + [0.0] * 4) + USAGE_EPS) / (1 + nc * USAGE_EPS)
    entropy = float(-(shares * shares.log()).sum())
    assert entropy == pytest.approx(math.log(4), abs=0.05)
    for scale in (0.5, 2, 50):
        assert region_usage_loss(one_hot * scale, 2).item() == 0  # more regions than asked for: no push
        assert region_usage_loss(one_hot * scale, 6).item() == pytest.approx(math.log(6) - entropy, abs=1e-5)
    # The gradient (through the softmax) raises the empty channels' logits and lowers the used ones'.
    logits = (one_hot * 2).requires_grad_()
    region_usage_loss(logits, 8).backward()
    assert (logits.grad[:, 4:] < 0).all() and (logits.grad[one_hot.bool()] > 0).all()
    # Pixels hesitating over all channels still count as one region each: the argmax's.
    hesitating = torch.zeros(2, nc, 4, 4)
    hesitating[:, 0] = 1e-3
    shares = (torch.tensor([1.0] + [0.0] * (nc - 1)) + USAGE_EPS) / (1 + nc * USAGE_EPS)
    expected = math.log(nc) + float((shares * shares.log()).sum())
    assert region_usage_loss(hesitating, nc).item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match=r"argument 'min_regions' must be an int in \[1, 8\] \(Nc\), got 9"):
        region_usage_loss(one_hot, 9)
    with pytest.raises(ValueError, match="argument 'logits' must be a floating-point"):
        region_usage_loss(torch.zeros(2, 8, 4), 2)


# ----------------------------------------------------------------- hint-mean matching


def _random_regions(b: int, nc: int, size: int, seed: int) -> torch.Tensor:
    labels = torch.randint(0, nc, (b, size // 4, size // 4), generator=_gen(seed))
    labels = labels.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    return F.one_hot(labels, nc).permute(0, 3, 1, 2).double()


def test_match_hint_means_sets_hinted_region_means_and_leaves_the_rest():
    nc = 6
    segments = _random_regions(2, nc, 16, 40)
    output = torch.rand(2, 3, 16, 16, generator=_gen(41), dtype=torch.float64) * 1.2 - 0.6
    colors = torch.rand(2, nc, 3, generator=_gen(42), dtype=torch.float64) * 0.6 - 0.3
    hints = HintGenerator(nc, backend="reference")(segments, colors=colors, num_hints=torch.tensor([3, 5]))
    matched = match_hint_means(output, hints, segments, backend="reference")
    for b, n in enumerate((3, 5)):
        for region in range(nc):
            inside = segments[b, region].bool()
            if not inside.any():
                continue
            if region < n:  # shifted by one colour: the hint's mean, the output's texture
                torch.testing.assert_close(matched[b][:, inside].mean(dim=1), colors[b, region])
                shift = matched[b][:, inside] - output[b][:, inside]
                torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
            else:
                torch.testing.assert_close(matched[b][:, inside], output[b][:, inside])


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_match_hint_means_is_exact_where_the_clamp_bites(dtype, tolerance):
    # Near-white and near-black hints over a spread output: shifting by (hint - mean) would clamp
    # pixels and leave the region's mean short of the hint; the solved shift lands on it.
    nc = 4
    segments = _random_regions(2, nc, 32, 51).to(dtype)
    output = (torch.rand(2, 3, 32, 32, generator=_gen(52), dtype=torch.float64) * 1.8 - 0.9).to(dtype)
    colors = torch.tensor([[0.95, 0.9, 0.97], [-0.93, -0.9, -0.8], [0.2, -0.1, 0.0], [1.0, 1.0, 1.0]], dtype=dtype)
    hints = HintGenerator(nc, backend="reference")(segments, colors=colors.expand(2, nc, 3), num_hints=nc)
    means = segment_hint_colors_reference(segments, output, torch.full((2,), nc))[0]
    naive = (output + hints[:, 3:] * (hints[:, :3] - means)).clamp(-1, 1)
    matched = match_hint_means(output, hints, segments, backend="reference")
    assert (segments.sum(dim=(2, 3)) > 0).all()  # the seed gives every region pixels in both images
    for b in range(2):
        for region in range(nc):
            inside = segments[b, region].bool()
            assert (matched[b][:, inside].mean(dim=1) - colors[region]).abs().max() <= tolerance
            unclamped = inside & (matched[b].abs() < 1).all(dim=0)
            shift = matched[b][:, unclamped] - output[b][:, unclamped]  # one colour where not clamped
            torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    naive_error = max((naive[0][:, segments[0, r].bool()].mean(dim=1) - colors[r]).abs().max() for r in range(2))
    assert naive_error > 0.02  # the case is one the plain shift gets wrong
    for b in range(2):  # pure white: every pixel of the region at the top of the range (float32
        # averaging leaves the last pixel within 1e-4 of it, far below one 8-bit level)
        assert (matched[b][:, segments[b, 3].bool()] >= 1 - 1e-4).all()


def test_match_hint_means_gradient_through_the_clamp():
    # Implicit gradient of the solved shift: gradcheck where part of each region is clamped, and a
    # region whose hint is pure white (clamped whole) passes a zero gradient, not NaN.
    nc = 3
    segments = _random_regions(1, nc, 8, 53)
    output = (torch.rand(1, 3, 8, 8, generator=_gen(54), dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    colors = torch.tensor([[[0.9, 0.85, -0.9], [0.1, -0.2, 0.3], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    hints = HintGenerator(nc, backend="reference")(segments, colors=colors, num_hints=torch.tensor([nc]))
    assert torch.autograd.gradcheck(lambda o: match_hint_means(o, hints, segments, backend="reference"), (output,))
    matched = match_hint_means(output, hints, segments, backend="reference")
    white = segments[0, 2].bool()
    assert (matched[0][:, white] >= 1 - 1e-12).all()
    (grad,) = torch.autograd.grad(matched.sum(), output)
    assert torch.isfinite(grad).all() and (grad[0][:, white] == 0).all()


def test_match_hint_means_never_raises_the_error_against_a_target_with_those_means():
    # The evaluation's simulated hints are the target's region means: matching removes each hinted
    # region's mean error (as long as nothing is clamped) and touches nothing else.
    nc = 8
    segments = _random_regions(3, nc, 16, 43)
    target = torch.rand(3, 3, 16, 16, generator=_gen(44), dtype=torch.float64) * 1.6 - 0.8
    output = (target + 0.3 * torch.randn(3, 3, 16, 16, generator=_gen(45), dtype=torch.float64)).clamp(-0.9, 0.9)
    generator = HintGenerator(nc, backend="reference")
    errors = []
    for n in range(nc + 1):
        hints = generator(segments, target, num_hints=torch.full((3,), n))
        errors.append(((match_hint_means(output, hints, segments) - target) ** 2).mean(dim=(1, 2, 3)))
    errors = torch.stack(errors)
    assert (errors[1:] <= errors[:-1] + 1e-12).all()
    assert (errors[-1] < errors[0]).all()


def test_match_hint_means_is_differentiable_and_checks_its_hints():
    nc = 4
    segments = _random_regions(1, nc, 8, 46)
    output = (torch.rand(1, 3, 8, 8, generator=_gen(47), dtype=torch.float64) - 0.5).requires_grad_()
    colors = torch.rand(1, nc, 3, generator=_gen(48), dtype=torch.float64) - 0.5
    hints = HintGenerator(nc, backend="reference")(segments, colors=colors, num_hints=torch.tensor([2]))
    assert torch.autograd.gradcheck(lambda o: match_hint_means(o, hints, segments, backend="reference"), (output,))
    with pytest.raises(ValueError, match="argument 'hints' must be"):
        match_hint_means(output, hints[:, :3], segments)
    with pytest.raises(ValueError, match="match_hint_means must be a bool"):
        GuidingPainterConfig.preset("small", match_hint_means=1)


def test_model_with_match_hint_means_honours_the_colours_in_colorize_and_forward():
    config = GuidingPainterConfig.preset(
        "small", num_segments=5, seg_base_channels=4, color_base_channels=4, image_size=16, match_hint_means=True
    )
    torch.manual_seed(0)
    model = GuidingPainter(config).eval()
    sketch = torch.rand(1, 1, 16, 16, generator=_gen(49))
    colors = torch.tensor([[0.4, -0.2, 0.1], [-0.3, 0.2, 0.5], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1], [0.2, 0.3, 0.4]])
    out = model.colorize(sketch, colors, num_hints=2)
    with torch.no_grad():
        segments = model._argmax_segments(sketch)
        hints = model.hint_generator(segments, colors=colors, num_hints=2)
        plain = model.colorization(sketch, hints, segments)
    torch.testing.assert_close(out, match_hint_means(plain, hints, segments))
    assert not torch.equal(out, plain)
    target = torch.rand(1, 3, 16, 16, generator=_gen(50)) * 2 - 1
    forward = model(sketch, target, tau=None, num_hints=torch.tensor([5]))
    plain = model.colorization(sketch, forward.hints, forward.segments)
    torch.testing.assert_close(forward.output, match_hint_means(plain, forward.hints, forward.segments))

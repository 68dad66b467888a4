"""pytest-benchmark: images/s of AugmentedSelfReference (colour jitter + XDoG sketch + TPS warp and
grid) at 256x256, batch 16, as a training step runs it.

    pytest benchmarks/test_bench_augmented_self_reference.py --benchmark-enable

images/s (from the median round) lands in the report's extra_info. The default test run
(`--benchmark-disable`) executes each case once."""

from __future__ import annotations

import pytest
import torch

from refcolor.data.augmented_self_reference import AugmentedSelfReference
from tests.helpers import devices

B, H, W = 16, 256, 256


def cases():
    for device in devices():
        yield pytest.param(device, "yuv", None, id=f"{device}-yuv")
        yield pytest.param(device, "hsv", None, id=f"{device}-hsv")  # kornia.enhance.adjust_hue
    # One CPU thread: the per-core rate (DataLoader workers; a busy machine, where torch's
    # two-thread kernels wait for a descheduled thread).
    yield pytest.param("cpu", "yuv", 1, id="cpu-yuv-1thread")


@pytest.mark.parametrize("device, hue_mode, threads", list(cases()))
def test_augmented_self_reference_speed(benchmark, device, hue_mode, threads):
    module = AugmentedSelfReference(hue_mode=hue_mode, seed=0)
    images = torch.rand(B, 3, H, W, generator=torch.Generator().manual_seed(0)).to(device)

    def step():
        with torch.no_grad():
            out = module(images)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.group = f"AugmentedSelfReference {B}x3x{H}x{W} ({device})"
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        out = benchmark(step)
    finally:
        torch.set_num_threads(previous)
    assert out["reference"].shape == (B, 3, H, W)
    if benchmark.stats is not None:  # None under --benchmark-disable
        # The median: one round stalled by another process on a 2-core machine skews the mean.
        benchmark.extra_info["images_per_s"] = round(B / benchmark.stats.stats.median, 1)

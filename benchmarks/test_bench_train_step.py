"""pytest-benchmark: one full training step (augmentation, generator, discriminator and both
updates) of the small presets on the CPU, with the fused ops ("auto") against the pure-PyTorch
reference ops ("reference": grid_sample TPS warp, einsum hint colours, naive attention).

    pytest benchmarks/test_bench_train_step.py --benchmark-enable --benchmark-columns=min,median,mean

Images/s = batch size (extra_info) / step time. The default test run (`--benchmark-disable`)
executes each case once. The GPU counterpart (paper presets, AMP) is benchmarks/gpu_train_step.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from refcolor.train.config import TrainConfig
from refcolor.train.trainer import Trainer

BATCH = 8


@pytest.fixture(autouse=True)
def no_vgg(monkeypatch, tmp_path):
    # The VGG terms need downloaded weights; the benchmark times the step without them everywhere.
    monkeypatch.delenv("REFCOLOR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.mark.parametrize("backend", ["auto", "reference"], ids=["fused", "reference"])
@pytest.mark.parametrize("model", ["scft", "guide"])
def test_train_step_speed(benchmark, tmp_path, model, backend):
    config = TrainConfig(
        model=model,
        preset="small",
        batch_size=BATCH,
        out=str(tmp_path / "run"),
        device="cpu",
        backend=backend,
        progress="off",
        tensorboard=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, log=lambda *a: None)
    images = torch.stack([trainer.dataset[i]["image"] for i in range(BATCH)])
    trainer.train_step(images, 0)  # warm-up: first-call costs (op registration, allocator)
    step = iter(range(1, 1 << 30))
    benchmark.extra_info.update(batch_size=BATCH, image_size=trainer.task.image_size, model=model, backend=backend)
    logs = benchmark(lambda: trainer.train_step(images, next(step)))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())

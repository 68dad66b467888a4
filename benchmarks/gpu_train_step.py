"""GPU benchmark: training steps/s and images/s of the paper presets (256x256, AMP), with the fused
ops against the reference ops, written to benchmarks/results/<device>.json under "train_step".

    python -m benchmarks.gpu_train_step [--batch-size 16] [--models scft guide]

A step is refcolor.train.Trainer.train_step on a fixed batch (augmentation on the GPU, generator,
discriminator, both updates); timed with CUDA events over `--steps` steps after `--warmup` steps.
There is no single physical floor for a whole step; the per-op floors are in the op benchmarks.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings

import torch

from benchmarks.gpu_common import RESULTS, copy_bandwidth, require_gpu, write_results
from refcolor.train.config import TrainConfig
from refcolor.train.trainer import Trainer


def time_steps(model: str, backend: str, batch: int, warmup: int, steps: int) -> float:
    """Seconds per step."""
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = TrainConfig(model=model, preset="paper", batch_size=batch, out=out, device="cuda",
                             backend=backend, amp="on", progress="off", tensorboard=False)
        trainer = Trainer(config, log=lambda *a: None)
        n = min(batch, len(trainer.dataset))
        images = torch.stack([trainer.dataset[i % n]["image"] for i in range(batch)]).cuda()
        for s in range(warmup):
            trainer.train_step(images, s)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for s in range(steps):
            trainer.train_step(images, warmup + s)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["scft", "guide"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = require_gpu("gpu_train_step")
    rows = []
    for model in args.models:
        seconds = {b: time_steps(model, b, args.batch_size, args.warmup, args.steps) for b in ("auto", "reference")}
        for backend, s in seconds.items():
            rows.append({"model": model, "preset": "paper", "batch_size": args.batch_size, "amp": True,
                         "backend": backend, "seconds_per_step": s, "steps_per_s": 1 / s,
                         "images_per_s": args.batch_size / s,
                         "speedup_vs_reference": seconds["reference"] / s})
            print(f"{device} {model} {backend:>9}: {1e3 * s:8.1f} ms/step  {args.batch_size / s:7.1f} img/s")
    print(f"wrote {write_results(RESULTS, 'train_step', rows, copy_bandwidth())}")


if __name__ == "__main__":
    main()

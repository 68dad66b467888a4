"""GPU benchmark: training step time of the paper presets (256x256, AMP), refcolor's fused ops
(backend "auto") against the reference ops, written under "train_step" in benchmarks/results/<device>.json.

    python -m benchmarks.gpu_train_step [--batch-size 16] [--models scft guide] [--smoke]

A step is refcolor.train.Trainer.train_step on a fixed batch (augmentation on the GPU, generator,
discriminator, both updates), timed with CUDA events over `--steps` steps after `--warmup` steps.
Without VGG19 weights on the machine (none can be fetched there) the SCFT step would drop its
perceptual and style losses; the benchmark then puts a randomly initialised VGG19 in their place,
which costs the same FLOPs. There is no single physical floor for a whole step (the per-op floors
are in the op benchmarks). Target (issue 11): the fused step >= 1.3x faster than the reference step,
per model."""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.gpu_common import (
    RESULTS,
    describe_floors,
    device_name,
    device_of,
    figure,
    find,
    measure_floors,
    synchronize,
    target,
    write_section,
)
from refcolor.train.config import TrainConfig
from refcolor.train.trainer import Trainer

TARGET_SPEEDUP = 1.3


def _timed_vgg(trainer) -> str | None:
    """Give an SCFT task whose losses do not run on VGG19 (no VGG19 weights here) a random VGG19 (the
    paper's network, same cost); returns a note if so."""
    task = trainer.task
    if getattr(task, "kind", None) != "scft" or task.feature_network == "vgg19":
        return None
    from refcolor.losses import VGGLoss
    from refcolor.models.vgg import VGG19Features

    defaults = task.loss_defaults
    task.weights["perceptual"], task.weights["style"] = defaults.perceptual, defaults.style
    task.feature_loss, task.feature_network = VGGLoss(VGG19Features()).to(trainer.device), "vgg19"
    return "scft: no VGG19 weights here, so a randomly initialised VGG19 stands in for the perceptual and style losses"


def time_steps(model: str, backend: str, batch: int, warmup: int, steps: int, device: str, preset: str):
    """(seconds per step, note or None)."""
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = TrainConfig(
            model=model,
            preset=preset,
            batch_size=batch,
            out=out,
            device=device,
            backend=backend,
            amp="on" if device == "cuda" else "off",
            progress="off",
            tensorboard=False,
        )
        trainer = Trainer(config, log=lambda *a: None)
        note = _timed_vgg(trainer)
        n = min(batch, len(trainer.dataset))
        images = torch.stack([trainer.dataset[i % n]["image"] for i in range(batch)]).to(device)
        for s in range(warmup):
            trainer.train_step(images, s)
        synchronize(device)
        start = time.perf_counter()
        if device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        for s in range(steps):
            trainer.train_step(images, warmup + s)
        if device == "cuda":
            end.record()
            torch.cuda.synchronize()
            return begin.elapsed_time(end) / 1e3 / steps, note
        return (time.perf_counter() - start) / steps, note


def add_targets(rows: list[dict]) -> None:
    for model in sorted({r["params"]["model"] for r in rows}):
        fused, reference = find(rows, model=model, backend="auto"), find(rows, model=model, backend="reference")
        if fused and reference:
            fused[0]["targets"].append(
                target(
                    f"{model}: fused step >= {TARGET_SPEEDUP}x faster than reference ops",
                    reference[0]["ms"] / fused[0]["ms"],
                    TARGET_SPEEDUP,
                    "x",
                )
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["scft", "guide"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="CPU dry run: small preset, batch 2, one step")
    args = parser.parse_args(argv)
    device = device_of(args.smoke)
    preset, batch, warmup, steps = (
        ("small", 2, 1, 1) if args.smoke else ("paper", args.batch_size, args.warmup, args.steps)
    )
    floors = measure_floors(device)
    print(f"{device_name(device)}: {describe_floors(floors)}")
    rows, notes = [], []
    for model in args.models:
        for backend in ("auto", "reference"):
            seconds, note = time_steps(model, backend, batch, warmup, steps, device, preset)
            if note and note not in notes:
                notes.append(note)
            params = {
                "model": model,
                "preset": preset,
                "batch_size": batch,
                "amp": device == "cuda",
                "backend": backend,
                "steps": steps,
                "warmup": warmup,
            }
            rows.append(
                figure(
                    f"{model} {preset} batch {batch} {backend}",
                    params,
                    seconds * 1e3,
                    floors,
                    extra={"images_per_s": round(batch / seconds, 1)},
                )
            )
            print(f"{model} {backend:>9}: {1e3 * seconds:8.1f} ms/step  {batch / seconds:7.1f} img/s")
    add_targets(rows)
    print(f"wrote {write_section(args.out, device_name(device), 'train_step', rows, floors, notes=notes)}")


if __name__ == "__main__":
    main()

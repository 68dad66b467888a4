"""`refcolor train`: train a colorizer (scft, guide or exemplar) on a folder of colour images.

Settings come from TrainConfig's defaults, then --config FILE (JSON or TOML, TrainConfig's keys),
then the options given here. With --resume the run's saved config is the base instead, and only
the options given explicitly are applied on top of it. Multi-GPU / multi-node: start it with
`torchrun --nproc-per-node N -m refcolor train ...` (--batch-size is per process).
"""

from __future__ import annotations

import argparse

# option -> TrainConfig key (all default to None: "not given")
OPTIONS = {
    "model": "model",
    "preset": "preset",
    "size": "image_size",
    "data": "data",
    "out": "out",
    "batch_size": "batch_size",
    "steps": "steps",
    "seed": "seed",
    "device": "device",
    "backend": "backend",
    "amp": "amp",
    "lr_g": "lr_generator",
    "lr_d": "lr_discriminator",
    "lr_decay_start": "lr_decay_start",
    "gan_mode": "gan_mode",
    "checkpoint_every": "checkpoint_every",
    "sample_every": "sample_every",
    "log_every": "log_every",
    "num_workers": "num_workers",
    "vgg_weights": "vgg_weights",
    "progress": "progress",
    "init_weights": "init_weights",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a colorizer (scft, guide or exemplar) on a folder of colour images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        choices=("scft", "guide", "exemplar"),
        help="scft (reference-based), guide (GuidingPainter) or exemplar (AdaIN exemplar colorization); default scft",
    )
    p.add_argument("--data", metavar="DIR", help="folder of colour images (default: the bundled sample set)")
    p.add_argument("--preset", choices=("small", "paper"), help="model size (default small: trains on a CPU)")
    p.add_argument("--size", type=int, metavar="S", help="training resolution (default: the preset's)")
    p.add_argument("--batch-size", type=int, metavar="B", help="images per step per process (default 8)")
    p.add_argument("--steps", type=int, metavar="N", help="total steps of the run (default 1000)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/refcolor)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument(
        "--init-weights",
        metavar="MODEL",
        help="fine-tune: start the generator from MODEL (a model file, run directory or 'bundled')",
    )
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (TrainConfig's keys)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", help="fused-op backend: auto (default), reference, cpp, cuda, triton, sdpa")
    p.add_argument("--amp", choices=("auto", "on", "off"), help="mixed precision (default auto: on for CUDA)")
    p.add_argument("--lr-g", type=float, help="generator learning rate (default 1e-4)")
    p.add_argument("--lr-d", type=float, help="discriminator learning rate (default 2e-4)")
    p.add_argument(
        "--lr-decay-start",
        type=int,
        metavar="STEP",
        help="from this step both learning rates fall linearly to 0 at --steps (default: constant)",
    )
    p.add_argument("--gan-mode", choices=("lsgan", "hinge", "bce"), help="adversarial loss (default lsgan)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints (default 500)")
    p.add_argument("--sample-every", type=int, metavar="N", help="steps between sample grids (default 250)")
    p.add_argument("--log-every", type=int, metavar="N", help="steps between log records (default 10)")
    p.add_argument("--num-workers", type=int, help="data-loader workers (default: 0 on CPU)")
    p.add_argument(
        "--vgg-weights",
        metavar="FILE_OR_URL",
        help="torchvision VGG19 weights for the perceptual/style losses (default: "
        "$REFCOLOR_VGG19_WEIGHTS or the torch hub cache; without weights those losses are off)",
    )
    p.add_argument("--download-vgg", action="store_true", default=None, help="allow downloading the VGG19 weights")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), help="progress display (default auto)")
    p.set_defaults(run=run)


def build_config(args):
    """(TrainConfig, resume) from parsed options: defaults < --config file < options (or, with
    --resume, the run's saved config < --config file < options)."""
    from refcolor.train.config import TrainConfig, read_config_file
    from refcolor.train.trainer import saved_config

    settings = read_config_file(args.config) if args.config else {}
    given = {key: getattr(args, opt) for opt, key in OPTIONS.items() if getattr(args, opt) is not None}
    if args.download_vgg:
        given["download_vgg"] = True
    settings.update(given)
    if args.resume:
        out = settings.get("out", TrainConfig().out)
        base = saved_config(out)
        base.update(settings)
        settings = base
    return TrainConfig.from_dict(settings, source=args.config or "options"), args.resume


def run(args) -> int:
    import sys
    import warnings

    from refcolor.train.trainer import train

    config, resume = build_config(args)
    with warnings.catch_warnings():
        # The VGG notice is a one-line warning; show it without the source line python adds.
        warnings.showwarning = lambda message, category, *a, **k: print(
            f"refcolor train: warning: {message}", file=sys.stderr
        )
        summary = train(config, resume=resume)
    return 0 if summary.get("stopped") == "done" else 1

#!/usr/bin/env python
"""Fork a training run: a new run directory that continues SRC's latest checkpoint exactly (weights,
optimiser moments, step, RNG states, GuidingPainter's temperature schedule) under changed model
options, which `refcolor train --resume` refuses to change in place.

    python scripts/fork_run.py runs/bundled_guide runs/bundled_guide_hm --model-override match_hint_means=true
    refcolor train --out runs/bundled_guide_hm --resume --steps 6000

Only model options that add no weights and change none may be set
(refcolor.models.model_options.WEIGHTLESS_OPTIONS): a fork is a
fine-tune of the same network, so every tensor of the checkpoint must still fit. The new run holds
one checkpoint, SRC's latest with the changed config, written atomically (the trainer writes its
config.json when it resumes); SRC is only read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from refcolor.atomic_files import atomic_save, atomic_write
from refcolor.models.checkpoint_file import CHECKPOINTS_DIR, LATEST_POINTER, latest_checkpoint, load_checkpoint
from refcolor.models.model_options import parse_model_override


def fork(src: Path, dst: Path, overrides: list[str]) -> Path:
    checkpoint_file = latest_checkpoint(src)
    if checkpoint_file is None:
        raise FileNotFoundError(f"src: no checkpoint in {src / CHECKPOINTS_DIR}")
    if dst.exists():
        raise FileExistsError(f"dst: {dst} exists; a fork needs a new run directory")
    checkpoint = load_checkpoint(checkpoint_file)
    config = dict(checkpoint["config"])
    kind = config["model"]
    changes = dict(parse_model_override(text, kind) for text in overrides)
    if not changes:
        raise ValueError("--model-override: give at least one KEY=VALUE")
    config["model_overrides"] = {**config.get("model_overrides", {}), **changes}
    if "model_config" in config:
        config["model_config"] = {**config["model_config"], **changes}
    config["out"] = str(dst)
    checkpoint["config"] = config
    (dst / CHECKPOINTS_DIR).mkdir(parents=True)
    atomic_save(checkpoint, dst / CHECKPOINTS_DIR / checkpoint_file.name)
    with atomic_write(dst / CHECKPOINTS_DIR / LATEST_POINTER, "w") as f:
        f.write(checkpoint_file.name + "\n")
    return dst / CHECKPOINTS_DIR / checkpoint_file.name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="run directory to continue")
    ap.add_argument("dst", type=Path, help="new run directory")
    ap.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        written = fork(args.src, args.dst, args.model_override)
    except (OSError, ValueError, KeyError) as err:
        print(f"fork_run: error: {err}")
        return 2
    print(f"forked {args.src} -> {written}; continue with: refcolor train --out {args.dst} --resume --steps N")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

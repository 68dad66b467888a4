#!/usr/bin/env python
"""Bundle a trained model into the package: refcolor/models/pretrained/KIND.safetensors.

    python scripts/bundle_model.py runs/bundled_scft scft
    python scripts/bundle_model.py runs/bundled_guide guide --model-override match_hint_means=true

RUN is what `--checkpoint` takes: a run directory (its model.safetensors, else its latest
checkpoint), a checkpoint .pt or a weights .safetensors. The floating-point weights are stored as
float16, half the bytes of float32 (the bundled files live in the git repository and every wheel);
loading casts them back to the model's float32 (refcolor.models.weights.load_weights). The model
config goes in the metadata as save_weights writes it, with the source's own metadata entries and
these: stored_dtype, source (the file read, relative to RUN) and step (when known: a checkpoint's
step, or the run's latest checkpoint when model.safetensors holds the same weights). The file is
written atomically, then read back and checked against the float16 rounding of the source; the
script prints its size and sha256 for the model card (refcolor/models/pretrained/KIND.md).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import sys
from pathlib import Path

import torch
from torch import nn

from refcolor.models.checkpoint_file import latest_checkpoint, load_checkpoint
from refcolor.models.loading import LoadedModel, load_model
from refcolor.models.model_options import parse_model_override
from refcolor.models.registry import MODELS, describe
from refcolor.models.weights import CONFIG_KEY, FORMAT_KEY, read_metadata, save_weights

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "refcolor" / "models" / "pretrained"
STORED_DTYPE = torch.float16
FLOAT16_MAX = torch.finfo(torch.float16).max


def source_metadata(loaded: LoadedModel) -> dict[str, str]:
    """The source file's own metadata entries (a .safetensors), without the ones save_weights writes."""
    if loaded.source.suffix != ".safetensors":
        return {}
    return {k: v for k, v in read_metadata(loaded.source).items() if k not in (CONFIG_KEY, FORMAT_KEY)}


def training_step(loaded: LoadedModel, run: Path) -> int | None:
    """The training step of the weights read: a checkpoint's own; for a run's model.safetensors,
    the latest checkpoint's when its generator holds exactly the same weights (training writes
    both at every checkpoint, so they differ only after an interrupted write)."""
    if loaded.source.suffix == ".pt":
        return int(load_checkpoint(loaded.source)["step"])
    latest = latest_checkpoint(run) if run.is_dir() else None
    if latest is None:
        return None
    ckpt = load_checkpoint(latest)
    generator = (ckpt.get("models") or {}).get("generator") or {}
    ours = loaded.model.state_dict()
    same = generator.keys() == ours.keys() and all(torch.equal(generator[k], ours[k].cpu()) for k in ours)
    return int(ckpt["step"]) if same else None


def to_float16(model: nn.Module) -> nn.Module:
    """A float16 copy (floating-point parameters and buffers only; integer buffers are kept).
    Refuses weights beyond float16's range instead of storing them as infinity."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and tensor.abs().max() > FLOAT16_MAX:
            raise ValueError(
                f"{name}: largest magnitude {tensor.abs().max().item():.4g} exceeds float16's {FLOAT16_MAX:.0f}"
            )
    return copy.deepcopy(model).to(STORED_DTYPE)


def check_round_trip(path: Path, kind: str, source: nn.Module) -> float:
    """Reload `path` as inference does and compare with the float16 rounding of `source` (exact);
    returns the largest relative change float16 made to a tensor (max |error| / max |tensor|)."""
    reloaded = load_model(path, expected_kind=kind).model.state_dict()
    worst = 0.0
    for name, tensor in source.state_dict().items():
        back = reloaded[name]
        if back.dtype != tensor.dtype:
            raise AssertionError(f"{name}: loads as {back.dtype}, the model has {tensor.dtype}")
        if tensor.is_floating_point():
            if not torch.equal(back, tensor.to(STORED_DTYPE).to(tensor.dtype)):
                raise AssertionError(f"{name}: reloaded weights are not the float16 rounding of the source")
            scale = tensor.abs().max().item()
            if scale > 0:
                worst = max(worst, (back - tensor).abs().max().item() / scale)
        elif not torch.equal(back, tensor):
            raise AssertionError(f"{name}: reloaded {tensor.dtype} tensor differs from the source")
    return worst


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle(run: Path, kind: str, output: Path, overrides: list[str] | None = None) -> dict:
    loaded = load_model(run, expected_kind=kind)
    model = loaded.model
    changes = dict(parse_model_override(text, kind) for text in overrides or [])
    if changes:  # options without weights (model_options), e.g. guide's match_hint_means
        model.config = dataclasses.replace(model.config, **changes)
    source = loaded.source.relative_to(run) if run.is_dir() else Path(loaded.source.name)
    metadata = {**source_metadata(loaded), "stored_dtype": "float16", "source": source.as_posix()}
    step = training_step(loaded, run)
    if step is not None:
        metadata["step"] = str(step)
    config = describe(kind, model.config)  # type: ignore[arg-type]  # both kinds' models carry .config
    save_weights(output, to_float16(model), config, metadata=metadata)  # atomic (refcolor.atomic_files)
    output.chmod(0o644)  # the atomic write's temporary file was private (0600); package data is for everyone
    worst = check_round_trip(output, kind, model)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "path": output,
        "source": loaded.source,
        "step": step,
        "parameters": parameters,
        "bytes": output.stat().st_size,
        "sha256": sha256(output),
        "float16_max_rel_change": worst,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", type=Path, help="run directory, checkpoint .pt or weights .safetensors")
    parser.add_argument("kind", metavar="KIND", choices=sorted(MODELS), help="model kind: %(choices)s")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="weights file to write (default: refcolor/models/pretrained/KIND.safetensors of this checkout)",
    )
    parser.add_argument(
        "--model-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a model option that has no weights (refcolor.models.model_options), e.g. match_hint_means=true",
    )
    args = parser.parse_args(argv)
    output = args.output or PRETRAINED / f"{args.kind}.safetensors"
    try:
        result = bundle(args.run.expanduser(), args.kind, output, args.model_override)
    except (OSError, ValueError) as err:
        print(f"bundle_model.py: error: {err}", file=sys.stderr)
        return 1
    step = "unknown" if result["step"] is None else result["step"]
    print(f"read {result['source']} (step {step}, {result['parameters']:,} parameters)")
    print(f"wrote {result['path']}: {result['bytes'] / 1e6:.2f} MB, sha256 {result['sha256']}")
    print(f"float16 storage: largest change of a tensor {result['float16_max_rel_change']:.2e} of its largest value")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The colorizers a studio serves, by kind: "guide" (GuidingPainter), "scft" (reference-based) and,
once refcolor has one, "exemplar". `--checkpoint KIND=PATH` picks a model; without one the bundled
model of that kind is used (`Colorizer.pretrained()` / `GuidedColorizer.pretrained()`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("guide", "scft", "exemplar")
LOADABLE = ("guide", "scft")  # no exemplar colorizer exists in refcolor yet


@dataclass
class Colorizers:
    """The loaded models; None where a kind is not served (its API mode answers 503 / 501).

    guide: a GuidedColorizer (.regions(sketch), .colorize(sketch, colors)); scft: a Colorizer,
    called as scft(sketch, reference); exemplar: once refcolor has one, called the same way as
    exemplar(image, reference) -> PIL image (the app and the page's Exemplar tab are ready for it)."""

    guide: Any = None
    scft: Any = None
    exemplar: Any = None
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, kind: str):
        return getattr(self, kind)

    def describe(self) -> dict:
        """Per kind: null, or {"source": where it came from, "image_size": training size}."""
        out: dict[str, dict | None] = {}
        for kind in KINDS:
            model = self.get(kind)
            if model is None:
                out[kind] = None
            else:
                config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
                out[kind] = {
                    "source": self.sources.get(kind, "given"),
                    "image_size": getattr(config, "image_size", None),
                }
        return out


def parse_checkpoint_option(text: str) -> tuple[str, Path]:
    """'KIND=PATH' (kinds: guide, scft) -> (kind, path). ValueError (one line) otherwise."""
    kind, sep, path = text.partition("=")
    kind = kind.strip().lower()
    if not sep or not path:
        raise ValueError(f"--checkpoint: expected KIND=PATH with KIND one of {', '.join(LOADABLE)}, got {text!r}")
    if kind == "exemplar":
        raise ValueError("--checkpoint exemplar=...: refcolor has no exemplar colorizer yet")
    if kind not in LOADABLE:
        raise ValueError(f"--checkpoint: KIND must be one of {', '.join(LOADABLE)}, got {kind!r} in {text!r}")
    return kind, Path(path)


def _classes() -> dict[str, Any]:
    from refcolor.inference.colorizer import Colorizer
    from refcolor.inference.guided import GuidedColorizer

    return {"guide": GuidedColorizer, "scft": Colorizer}


def load_colorizers(checkpoints: Mapping[str, str | os.PathLike], device: str = "cpu") -> Colorizers:
    """Load one model per loadable kind: from checkpoints[kind] when given (a run directory,
    .safetensors or .pt), else the bundled model (cls.pretrained()). A kind with neither is a
    one-line ValueError that names the --checkpoint to give."""
    unknown = sorted(set(checkpoints) - set(LOADABLE))
    if unknown:
        raise ValueError(f"checkpoints: kinds must be among {', '.join(LOADABLE)}, got {', '.join(unknown)}")
    loaded = Colorizers()
    for kind, cls in _classes().items():
        path = checkpoints.get(kind)
        if path is not None:
            if not Path(path).exists():
                raise FileNotFoundError(f"--checkpoint {kind}={path}: no such file or directory")
            model = cls.from_checkpoint(path, device=device)
            loaded.sources[kind] = str(path)
        elif callable(getattr(cls, "pretrained", None)):
            try:
                model = cls.pretrained(device=device)
            except FileNotFoundError as err:  # this build ships without that model
                raise FileNotFoundError(f"{err} (refcolor serve: --checkpoint {kind}=PATH)") from None
            loaded.sources[kind] = "bundled"
        else:
            raise ValueError(
                f"no bundled {kind} model in this installation: give --checkpoint {kind}=PATH "
                f"(a '{kind}' run directory, .safetensors or .pt checkpoint)"
            )
        setattr(loaded, kind, model)
    return loaded

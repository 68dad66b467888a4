"""The colorizers a studio serves, by kind: "guide" (GuidingPainter, refcolor.GuidedColorizer),
"scft" (reference-based, refcolor.Colorizer) and "exemplar" (exemplar-based, refcolor.ExemplarColorizer).
`--checkpoint KIND=PATH` picks a model; without one the bundled model of that kind is used
(`.pretrained()`). guide and scft must be found (else a one-line error naming --checkpoint KIND=PATH);
exemplar is optional: without a checkpoint or a bundled exemplar model the studio starts without it,
and Colorizers.missing says why (the health JSON, the API's 503 and the page's Exemplar tab show it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("guide", "scft", "exemplar")
LOADABLE = KINDS
# Kinds served only when a model is found: a build may ship without the exemplar model (its file
# is optional package data), and a studio without one is still a useful studio.
OPTIONAL = ("exemplar",)


def not_loaded_reason(kind: str) -> str:
    return f"no {kind} model loaded (start the server with --checkpoint {kind}=PATH)"


@dataclass
class Colorizers:
    """The loaded models; None where a kind is not served (its API mode answers 503).

    guide: a GuidedColorizer (.regions(sketch), .colorize(sketch, colors)); scft: a Colorizer,
    called as scft(sketch, reference); exemplar: an ExemplarColorizer, called as
    exemplar(image, reference) -> PIL image of the image's size. missing: why a kind is not served
    (one line naming the --checkpoint to give), for the kinds load_colorizers could not find."""

    guide: Any = None
    scft: Any = None
    exemplar: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def get(self, kind: str):
        return getattr(self, kind)

    def reason(self, kind: str) -> str:
        """Why `kind` is not served (one line)."""
        return self.missing.get(kind) or not_loaded_reason(kind)

    def not_served(self) -> dict[str, str]:
        """{kind: why} for every kind without a model."""
        return {kind: self.reason(kind) for kind in KINDS if self.get(kind) is None}

    def describe(self) -> dict:
        """Per kind: null (not served), or {"source": where it came from, "image_size": training size}."""
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
    """'KIND=PATH' (kinds: guide, scft, exemplar) -> (kind, path). ValueError (one line) otherwise."""
    kind, sep, path = text.partition("=")
    kind = kind.strip().lower()
    if not sep or not path:
        raise ValueError(f"--checkpoint: expected KIND=PATH with KIND one of {', '.join(LOADABLE)}, got {text!r}")
    if kind not in LOADABLE:
        raise ValueError(f"--checkpoint: KIND must be one of {', '.join(LOADABLE)}, got {kind!r} in {text!r}")
    return kind, Path(path)


def _classes() -> dict[str, Any]:
    from refcolor.inference.colorizer import Colorizer
    from refcolor.inference.exemplar import ExemplarColorizer
    from refcolor.inference.guided import GuidedColorizer

    return {"guide": GuidedColorizer, "scft": Colorizer, "exemplar": ExemplarColorizer}


def load_colorizers(checkpoints: Mapping[str, str | os.PathLike], device: str = "cpu") -> Colorizers:
    """Load one model per kind: from checkpoints[kind] when given (a run directory, .safetensors or
    .pt), else the bundled model (cls.pretrained()). A guide or scft kind with neither is a one-line
    error that names the --checkpoint to give; an exemplar kind with neither is left out (None), with
    the reason in .missing."""
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
                if kind in OPTIONAL:
                    loaded.missing[kind] = (
                        f"no bundled {kind} model in this installation; to serve it, start with "
                        f"--checkpoint {kind}=PATH (an '{kind}' run directory, .safetensors or .pt checkpoint)"
                    )
                    continue
                raise FileNotFoundError(f"{err} (refcolor serve: --checkpoint {kind}=PATH)") from None
            loaded.sources[kind] = "bundled"
        else:
            raise ValueError(
                f"no bundled {kind} model in this installation: give --checkpoint {kind}=PATH "
                f"(a '{kind}' run directory, .safetensors or .pt checkpoint)"
            )
        setattr(loaded, kind, model)
    return loaded

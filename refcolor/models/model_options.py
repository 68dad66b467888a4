"""Model options that change what a network computes around its weights but no weight: they may be
set on weights trained without them (scripts/bundle_model.py --model-override, scripts/fork_run.py).

    key, value = parse_model_override("match_hint_means=true", "guide")
"""

from __future__ import annotations

WEIGHTLESS_OPTIONS: dict[str, dict[str, type]] = {
    # GuidingPainterConfig.match_hint_means: hinted regions shifted to their hint's mean colour.
    "guide": {"match_hint_means": bool},
    # ExemplarColorizerConfig: the training masks' density and the inference hints (the U-Net's
    # input channels are the same whatever the density); the correspondence's lattice stride and
    # temperature (no weights: a finer lattice gives the same inputs, sharper).
    "exemplar": {
        "full_hint_probability": float,
        "inference_hints": str,
        "correspondence_stride": int,
        "correspondence_temperature": float,
        "strong_warp_probability": float,
    },
}
_BOOLEANS = {"true": True, "false": False}


def parse_model_override(text: str, kind: str) -> tuple[str, object]:
    """'KEY=VALUE' -> (key, value) for a weightless option of model `kind`; ValueError (one line) otherwise."""
    key, sep, raw = text.partition("=")
    allowed = WEIGHTLESS_OPTIONS.get(kind, {})
    if not sep or key not in allowed:
        raise ValueError(
            f"--model-override: expected KEY=VALUE with KEY one of {sorted(allowed)} for a {kind!r} model, got {text!r}"
        )
    if allowed[key] is bool:
        if raw.lower() not in _BOOLEANS:
            raise ValueError(f"--model-override: {key} expects true or false, got {raw!r}")
        return key, _BOOLEANS[raw.lower()]
    try:
        return key, allowed[key](raw)
    except ValueError:
        raise ValueError(f"--model-override: {key} expects a {allowed[key].__name__}, got {raw!r}") from None


__all__ = ["WEIGHTLESS_OPTIONS", "parse_model_override"]

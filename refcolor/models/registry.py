"""Model kinds by name: how trainers, weights files and inference tools rebuild a generator from a
JSON config. A weights file or checkpoint stores {"model": kind, "model_config": config.to_dict()}."""

from __future__ import annotations

from typing import Any

from torch import nn

from refcolor.models.exemplar_colorizer import ExemplarColorizer, ExemplarColorizerConfig
from refcolor.models.guiding_painter import GuidingPainter, GuidingPainterConfig
from refcolor.models.scft_colorizer import SCFTColorizer, SCFTColorizerConfig

# kind -> (model class, config class). "scft": reference-based (Lee et al. 2020); "guide":
# GuidingPainter (Cho et al. 2022); "exemplar": stylisation-based exemplar colorization (Xu et al. 2020).
ConfigClass = type[SCFTColorizerConfig] | type[GuidingPainterConfig] | type[ExemplarColorizerConfig]
MODELS: dict[str, tuple[type[nn.Module], ConfigClass]] = {
    "scft": (SCFTColorizer, SCFTColorizerConfig),
    "guide": (GuidingPainter, GuidingPainterConfig),
    "exemplar": (ExemplarColorizer, ExemplarColorizerConfig),
}


def check_kind(kind: str) -> str:
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; expected one of {sorted(MODELS)}")
    return kind


def model_config(kind: str, preset: str = "small", **overrides: Any):
    """The config of `kind` from a preset name plus field overrides."""
    return MODELS[check_kind(kind)][1].preset(preset, **overrides)


def config_from_dict(kind: str, data: dict[str, Any]):
    return MODELS[check_kind(kind)][1].from_dict(dict(data))


def build_model(kind: str, config) -> nn.Module:
    """The generator of `kind` from a config object or its to_dict() form."""
    model_cls, config_cls = MODELS[check_kind(kind)]
    if isinstance(config, dict):
        config = config_cls.from_dict(dict(config))
    return model_cls(config)


def describe(kind: str, config) -> dict[str, Any]:
    """The JSON metadata stored with a generator's weights."""
    return {"model": check_kind(kind), "model_config": config.to_dict()}


def build_from_metadata(metadata: dict[str, Any]) -> nn.Module:
    """Inverse of describe: build_model(metadata["model"], metadata["model_config"])."""
    if not isinstance(metadata, dict) or "model" not in metadata or "model_config" not in metadata:
        raise ValueError("model metadata must hold 'model' (the kind) and 'model_config'")
    return build_model(metadata["model"], metadata["model_config"])


__all__ = ["MODELS", "build_from_metadata", "build_model", "check_kind", "config_from_dict", "describe", "model_config"]

"""configs/bundled_*.toml, the recipes of the bundled models: each one parses into a TrainConfig and
a model config, so a typo fails here rather than an hour into `scripts/train_bundled.sh`."""

from __future__ import annotations

from pathlib import Path

import pytest

from refcolor.models.registry import MODELS
from refcolor.train.config import TrainConfig, read_config_file
from refcolor.train.tasks.base import resolve_model_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_bundled_recipe_parses(kind):
    config = TrainConfig.from_dict(read_config_file(CONFIGS / f"bundled_{kind}.toml"))
    assert config.model == kind
    model_config = resolve_model_config(config)
    for key, value in config.model_overrides.items():
        got = getattr(model_config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key

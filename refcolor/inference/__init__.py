"""Inference: load trained colorizers and apply them to user images."""

from refcolor.inference.colorizer import Colorizer
from refcolor.models.loading import LoadedModel, load_model  # public here: inference loads through it

__all__ = ["Colorizer", "LoadedModel", "load_model"]

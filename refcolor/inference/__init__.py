"""Inference: load trained colorizers and apply them to user images."""
from refcolor.inference.colorizer import Colorizer
from refcolor.inference.loading import LoadedModel, load_model

__all__ = ["Colorizer", "LoadedModel", "load_model"]

"""Inference: load trained colorizers and apply them to user images."""

from refcolor.inference.colorizer import Colorizer
from refcolor.inference.exemplar import ExemplarColorizer
from refcolor.models.loading import LoadedModel, load_model  # public here: inference loads through it

__all__ = ["Colorizer", "ExemplarColorizer", "LoadedModel", "load_model"]

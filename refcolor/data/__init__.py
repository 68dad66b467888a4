"""Training data: image folders, sketch extraction, augmented-self references, loaders."""

from refcolor.data.augmented_self_reference import AugmentedSelfReference
from refcolor.data.image_folder import ImageFolder, UnreadableImageWarning, sample_images_dir
from refcolor.data.loader import make_loader, to_device
from refcolor.data.sketch import SketchExtractor, gradient_sketch, xdog

__all__ = [
    "AugmentedSelfReference",
    "ImageFolder",
    "SketchExtractor",
    "UnreadableImageWarning",
    "gradient_sketch",
    "make_loader",
    "sample_images_dir",
    "to_device",
    "xdog",
]

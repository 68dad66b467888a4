"""refcolor: sketch colorization (reference-based SCFT, GuidingPainter, exemplar) with fused kernels."""

from refcolor import _extension

_extension.compiled_module()  # load the compiled kernels once; warns once if they are missing

from refcolor import losses, nn, ops  # noqa: E402
from refcolor.backends import available_backends  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Colorizer",
    "ExemplarColorizer",
    "GuidedColorizer",
    "available_backends",
    "losses",
    "nn",
    "ops",
    "__version__",
]

# The inference API loads on first use, so `import refcolor` stays light.
_LAZY = {
    "Colorizer": "refcolor.inference.colorizer",
    "ExemplarColorizer": "refcolor.inference.exemplar",
    "GuidedColorizer": "refcolor.inference.guided",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refcolor' has no attribute {name!r}")

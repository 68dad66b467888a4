"""refcolor: sketch colorization (reference-based SCFT, GuidingPainter, exemplar) with fused kernels."""
from refcolor import _extension

_extension.compiled_module()  # load the compiled kernels once; warns once if they are missing

from refcolor import losses, nn, ops  # noqa: E402
from refcolor.backends import available_backends  # noqa: E402

__version__ = "0.1.0"
__all__ = ["available_backends", "losses", "nn", "ops", "__version__"]

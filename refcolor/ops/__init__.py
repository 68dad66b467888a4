"""refcolor's fused ops. Each op lives in its own module with its reference implementation, its
custom-op registration and its autograd; the kernels are in csrc/ (C++/CUDA) and kernels/ (Triton)."""
from refcolor.backends import available_backends
from refcolor.ops.segment_hint_colors import segment_hint_colors, segment_hint_colors_reference

__all__ = ["available_backends", "segment_hint_colors", "segment_hint_colors_reference"]

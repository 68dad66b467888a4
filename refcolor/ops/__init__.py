"""refcolor's fused ops. Each op lives in its own module with its reference implementation, its
custom-op registration and its autograd; the kernels are in csrc/ (C++/CUDA) and kernels/ (Triton)."""

from refcolor.backends import available_backends
from refcolor.ops.line_regions import line_regions, line_regions_reference
from refcolor.ops.region_mean import region_mean, region_mean_reference
from refcolor.ops.scft_attention import scft_attention, scft_attention_reference
from refcolor.ops.segment_hint_colors import segment_hint_colors, segment_hint_colors_reference
from refcolor.ops.tps import tps_grid, tps_grid_from_params, tps_solve, tps_transform_points, tps_warp_reference
from refcolor.ops.tps_correspondence import tps_correspondence
from refcolor.ops.tps_warp import tps_warp, tps_warp_from_params, tps_warp_with_grid

__all__ = [
    "available_backends",
    "line_regions",
    "line_regions_reference",
    "region_mean",
    "region_mean_reference",
    "scft_attention",
    "scft_attention_reference",
    "segment_hint_colors",
    "segment_hint_colors_reference",
    "tps_correspondence",
    "tps_grid",
    "tps_grid_from_params",
    "tps_solve",
    "tps_transform_points",
    "tps_warp",
    "tps_warp_from_params",
    "tps_warp_reference",
    "tps_warp_with_grid",
]

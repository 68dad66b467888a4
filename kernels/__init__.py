"""Triton kernels of refcolor, installed as `refcolor.kernels` (never a top-level `kernels`).

One module per op; each needs `triton` and is imported lazily by the op that uses it, so refcolor
itself imports without Triton."""

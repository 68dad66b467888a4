"""Shared pytest setup for tests/ and benchmarks/.

Without a GPU, Triton kernels run under its interpreter, which must be switched on before `triton`
is first imported. On a GPU machine the real kernels run (override with TRITON_INTERPRET=0/1).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

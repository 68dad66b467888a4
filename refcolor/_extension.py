"""Loads the compiled kernels (`refcolor._C`) once, and tolerates their absence.

Without them `import refcolor` still works: one warning is issued and every op falls back to its
reference (or Triton) path.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

_module: ModuleType | None = None
_error: str | None = None
_loaded = False


def _load() -> None:
    global _module, _error, _loaded
    if _loaded:
        return
    _loaded = True
    try:
        import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

        _module = importlib.import_module("refcolor._C")
    except (ImportError, OSError) as exc:  # not built, or built against another torch
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"refcolor: compiled kernels unavailable ({_error}); ops fall back to their "
            "reference or Triton paths. Rebuild with `pip install -e . --no-build-isolation`.",
            RuntimeWarning,
            stacklevel=3,
        )


def compiled_module() -> ModuleType | None:
    _load()
    return _module


def load_error() -> str | None:
    """Why the compiled module could not be loaded, or None if it was."""
    _load()
    return _error


def has_cpu_kernels() -> bool:
    return compiled_module() is not None


def has_cuda_kernels() -> bool:
    module = compiled_module()
    return module is not None and bool(module.compiled_with_cuda())

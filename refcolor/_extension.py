"""Loads the compiled kernels (`refcolor._C`) once, and tolerates their absence.

Without them (not built) `import refcolor` still works: one warning is issued and every op falls back
to its reference (or Triton) path. A module built against another torch is an error, not a fallback:
its C++ ABI does not match (an isolated `pip install` builds against a torch it downloads for the
build), so `import refcolor` raises ImportError naming both versions and the one-line fix.
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
    import torch  # loads libc10/libtorch, which _C links against

    try:
        module = importlib.import_module("refcolor._C")
    except ModuleNotFoundError as exc:  # not built (or a pure-Python install, REFCOLOR_NO_EXT=1)
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"refcolor: compiled kernels unavailable ({_error}); ops fall back to their "
            "reference or Triton paths. Rebuild with `pip install -e . --no-build-isolation`.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    except (ImportError, OSError) as exc:  # built, but it does not load here: undefined symbols etc.
        raise ImportError(
            f"refcolor._C cannot be loaded with the installed torch {torch.__version__} "
            f"({type(exc).__name__}: {exc}); it was most likely built against another torch. {REBUILD}"
        ) from exc
    # Builds from before torch_version existed cannot say; they load as they did.
    built = module.torch_version() if hasattr(module, "torch_version") else None
    if built is not None and _release(built) != _release(torch.__version__):
        raise ImportError(
            f"refcolor._C was built against torch {built}, but torch {torch.__version__} is installed. {REBUILD}"
        )
    _module = module


REBUILD = "Rebuild it against the installed torch: pip install --no-build-isolation -e ."


def _release(version: str) -> str:
    """ "2.13.0+cu130" -> "2.13.0": CPU and CUDA builds of one release share the C++ ABI."""
    return version.split("+")[0]


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

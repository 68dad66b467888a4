"""Backend choice for refcolor's ops: which implementation runs a call, and why.

Every op has some of these backends: "reference" (pure PyTorch, the ground truth), "cpp" (C++ CPU),
"cuda" (CUDA C++), "triton", and "sdpa" (torch's scaled_dot_product_attention, for attention ops).
`backend="auto"` takes the first usable one in the device's preference order below; the environment
variable REFCOLOR_BACKEND replaces "auto" (an explicit `backend=` argument still wins). Rejections are
logged on the "refcolor.backends" logger at DEBUG level, e.g.
`logging.getLogger("refcolor.backends").setLevel("DEBUG")`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

import torch

from refcolor import _extension

BACKENDS = ("reference", "cpp", "cuda", "triton", "sdpa")
ENV_VAR = "REFCOLOR_BACKEND"

# Fastest first. On CPU the Triton interpreter is for testing only, never an automatic choice.
# On CUDA the compiled kernels come first until GPU benchmarks (benchmarks/gpu_*.py) say otherwise.
PREFERENCE = {"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")}

logger = logging.getLogger("refcolor.backends")


@functools.cache
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"triton is not importable ({type(exc).__name__}: {exc})"
    return None


def triton_interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backend_unavailable_reason(backend: str, device: torch.device | str) -> str | None:
    """None if `backend` can run on `device` at all, else a sentence saying why not."""
    device_type = torch.device(device).type
    if backend in ("reference", "sdpa"):  # plain torch: runs wherever torch does
        return None
    if backend == "cpp":
        if device_type != "cpu":
            return f"the C++ CPU kernels take CPU tensors, not {device_type}"
        if not _extension.has_cpu_kernels():
            return f"refcolor._C is not loaded ({_extension.load_error()})"
        return None
    if backend == "cuda":
        if device_type != "cuda":
            return f"the CUDA kernels take CUDA tensors, not {device_type}"
        if not _extension.has_cuda_kernels():
            why = _extension.load_error() or "refcolor._C was built without CUDA"
            return f"CUDA kernels not built ({why})"
        return None
    if backend == "triton":
        error = _triton_import_error()
        if error:
            return error
        if device_type == "cpu" and not triton_interpreter_enabled():
            return "Triton runs CPU tensors only under the interpreter (TRITON_INTERPRET=1)"
        if device_type not in ("cpu", "cuda"):
            return f"Triton kernels take CUDA tensors, not {device_type}"
        return None
    return f"unknown backend {backend!r}; expected one of {BACKENDS}"


def available_backends(device: torch.device | str | None = None):
    """Usable backends: a list for `device`, or a dict {device type: list} for cpu (and cuda)."""
    if device is None:
        types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        return {t: available_backends(t) for t in types}
    return [b for b in BACKENDS if backend_unavailable_reason(b, device) is None]


def choose_backend(
    op: str,
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    dtypes: Mapping[str, tuple[torch.dtype, ...]],
    preference: Mapping[str, tuple[str, ...]] | None = None,
) -> str:
    """Resolve `requested` ("auto" or a backend name) for one call of `op`.

    `dtypes` maps each backend the op implements to the dtypes it takes; `preference` overrides
    PREFERENCE per device type for ops whose measured order differs. An explicitly requested
    backend that cannot run raises ValueError with the reason; "auto" falls through the preference
    list and logs each rejection.
    """
    source = "backend argument"
    if requested == "auto" and os.environ.get(ENV_VAR, "auto") != "auto":
        requested, source = os.environ[ENV_VAR], f"environment variable {ENV_VAR}"
    if requested != "auto":
        if requested not in BACKENDS:
            raise ValueError(f"{op}: unknown backend {requested!r} ({source}); expected 'auto' or one of {BACKENDS}")
        reason = _reject_reason(requested, device, dtype, dtypes)
        if reason:
            raise ValueError(f"{op}: backend {requested!r} ({source}) cannot run this call: {reason}")
        return requested
    order = {**PREFERENCE, **(preference or {})}
    for backend in order.get(device.type, ("reference",)):
        reason = _reject_reason(backend, device, dtype, dtypes)
        if reason is None:
            logger.debug("%s: chose backend %r for %s %s", op, backend, device.type, dtype)
            return backend
        logger.debug("%s: rejected backend %r: %s", op, backend, reason)
    return "reference"


def _reject_reason(backend, device, dtype, dtypes) -> str | None:
    if backend not in dtypes:
        return f"{backend!r} is not implemented for this op (implemented: {tuple(dtypes)})"
    reason = backend_unavailable_reason(backend, device)
    if reason:
        return reason
    if dtype not in dtypes[backend]:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes[backend])
        return f"it takes {names}, got {str(dtype).replace('torch.', '')}"
    return None

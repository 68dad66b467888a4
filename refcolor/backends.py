"""Backend choice for refcolor's ops: which implementation runs a call, and why.

Every op has some of these backends: "reference" (pure PyTorch, the ground truth), "cpp" (C++ CPU),
"cuda" (CUDA C++), "triton", and "sdpa" (torch's scaled_dot_product_attention, for attention ops).
`backend="auto"` takes the first usable one in the device's preference order below; the environment
variable REFCOLOR_BACKEND replaces "auto" (an explicit `backend=` argument still wins), so
REFCOLOR_BACKEND=reference forces the reference path. Rejections are logged on the
"refcolor.backends" logger at DEBUG level, e.g. `logging.getLogger("refcolor.backends").setLevel("DEBUG")`.

Self-check on GPUs: no CUDA or Triton kernel of refcolor has been verified on every GPU it may meet,
so the first time "auto" would pick one for an (op, backend, GPU architecture, dtype), the op's
registered self-check runs it once on small shapes against the reference path, forward and backward.
The kernel is picked only if that passes; otherwise "auto" falls through to the next backend and one
WARNING line says why. An op with no registered self-check never gets an unverified GPU kernel from
"auto". An explicit `backend=` skips the check; REFCOLOR_SELF_CHECK=0 turns it off.
`refcolor doctor` prints each op's choice per device with the reasons.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping

import torch

from refcolor import _extension

BACKENDS = ("reference", "cpp", "cuda", "triton", "sdpa")
ENV_VAR = "REFCOLOR_BACKEND"
SELF_CHECK_ENV_VAR = "REFCOLOR_SELF_CHECK"
# The backends that run refcolor's own GPU kernels ("sdpa" is torch's, "reference" plain torch).
SELF_CHECKED = ("cuda", "triton")

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
        reason = _reject_reason(backend, device, dtype, dtypes) or self_check_failure(op, backend, device, dtype)
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


# ----------------------------------------------------------------------------- self-check

# op -> check(backend, device, dtype): None if the backend agrees with the reference, else why not.
_SELF_CHECKS: dict[str, Callable[[str, torch.device, torch.dtype], str | None]] = {}
# (op, backend, "sm_90", dtype) -> None (passed) or the reason it failed.
_VERIFIED: dict[tuple[str, str, str, torch.dtype], str | None] = {}


def register_self_check(op: str, check: Callable[[str, torch.device, torch.dtype], str | None]) -> None:
    """`check(backend, device, dtype)` runs `backend` on small inputs against the reference path,
    forward and backward, and returns None if they agree, else a sentence saying where they differ."""
    _SELF_CHECKS[op] = check


def gpu_arch(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def self_check_enabled() -> bool:
    return os.environ.get(SELF_CHECK_ENV_VAR, "1") != "0"


def self_check_failure(op: str, backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """None if `backend` may run `op` on `device` for `dtype` (not a GPU kernel of refcolor's, or it
    passed its self-check on this GPU architecture), else why not. The check runs once per
    (op, backend, architecture, dtype) and process; a failure is logged once as a WARNING."""
    if backend not in SELF_CHECKED or device.type != "cuda" or not self_check_enabled():
        return None
    key = (op, backend, gpu_arch(device), dtype)
    if key not in _VERIFIED and torch.compiler.is_compiling():
        # Tracing (fake tensors) cannot run a kernel: until an eager call has checked it, the
        # compiled graph takes the next backend. Not cached, so the first eager call checks it.
        reason = "not verified on this GPU yet (the check runs on an eager call, not while torch.compile traces)"
        logger.debug("%s: %s kernel %s", op, backend, reason)
        return reason
    if key not in _VERIFIED:
        check = _SELF_CHECKS.get(op)
        result: str | None
        if check is None:
            result = f"{op} has no self-check, so its {backend} kernel is not verified on this GPU"
        else:
            try:
                # The op may be called under no_grad or inference_mode; the check needs autograd.
                with torch.inference_mode(False), torch.enable_grad():
                    result = check(backend, device, dtype)
            except Exception as exc:  # a kernel that cannot launch here (arch, resources, driver)
                first = str(exc).splitlines()[0] if str(exc) else ""
                result = f"it raised {type(exc).__name__}: {first}"
        _VERIFIED[key] = result
        if result is not None:
            logger.warning(
                "%s: the %s kernel failed its first-use check on %s %s (%s); using the next backend",
                op,
                backend,
                key[2],
                str(dtype).replace("torch.", ""),
                result,
            )
    return _VERIFIED[key]


def verified_kernels() -> dict[tuple[str, str, str, torch.dtype], str | None]:
    """The self-checks run so far in this process: key -> None (passed) or the failure."""
    return dict(_VERIFIED)


_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def compare_with_reference(
    call: Callable[..., object], inputs: list[torch.Tensor], backend: str, dtype: torch.dtype
) -> str | None:
    """Runs `call(*inputs, backend=...)` with `backend` and with "reference" and compares the
    floating outputs, and the gradients of the floating inputs (of a fixed random projection of the
    outputs), relative to the reference's largest magnitude (at least 1) at a tolerance for `dtype`.
    None if they agree, else which one differs and by how much."""
    tolerance = _TOLERANCE[dtype]
    results: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name in (backend, "reference"):
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
        out = call(*xs, backend=name)
        outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o.is_floating_point()]
        gen = torch.Generator(device=outs[0].device).manual_seed(0)
        weights = [torch.randn(o.shape, generator=gen, device=o.device, dtype=torch.float64) for o in outs]
        loss = torch.stack([(o.double() * w).sum() for o, w in zip(outs, weights, strict=True)]).sum()
        floats = [(i, x) for i, x in enumerate(xs) if x.requires_grad]
        grads = torch.autograd.grad(loss, [x for _, x in floats], allow_unused=True)
        results[name] = [(f"output {i}", o.detach().double()) for i, o in enumerate(outs)] + [
            (f"gradient of input {i}", torch.zeros_like(x, dtype=torch.float64) if g is None else g.double())
            for (i, x), g in zip(floats, grads, strict=True)
        ]
    for (what, got), (_, want) in zip(results[backend], results["reference"], strict=True):
        if got.shape != want.shape:
            return f"{what} has shape {tuple(got.shape)}, the reference {tuple(want.shape)}"
        if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(want).all()):
            return f"{what} is not finite"
        error = (got - want).abs().max().item() / max(want.abs().max().item(), 1.0) if got.numel() else 0.0
        if not error <= tolerance:
            return f"{what} differs from the reference by {error:.1e} (tolerance {tolerance:.0e})"
    return None


def explain(
    op: str,
    device: torch.device,
    dtype: torch.dtype,
    dtypes: Mapping[str, tuple[torch.dtype, ...]],
    preference: Mapping[str, tuple[str, ...]] | None = None,
) -> list[tuple[str, str]]:
    """What "auto" does for `op` on `device` and `dtype`: (backend, "chosen ..." or why it was passed
    over) in preference order, up to the chosen one. Runs the GPU self-checks as a real call would."""
    if os.environ.get(ENV_VAR, "auto") != "auto":
        return [(os.environ[ENV_VAR], f"chosen: forced by {ENV_VAR}")]
    lines = []
    order = {**PREFERENCE, **(preference or {})}
    for backend in order.get(device.type, ("reference",)):
        reason = _reject_reason(backend, device, dtype, dtypes) or self_check_failure(op, backend, device, dtype)
        if reason is None:
            checked = backend in SELF_CHECKED and device.type == "cuda" and self_check_enabled()
            lines.append((backend, "chosen (self-check passed)" if checked else "chosen"))
            return lines
        lines.append((backend, reason))
    lines.append(("reference", "chosen (the fallback)"))
    return lines

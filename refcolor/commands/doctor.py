"""`refcolor doctor`: which backend each op runs on each device, and why.

refcolor doctor [--dtype float32 ...]
    prints the versions (torch, CUDA, Triton), whether the compiled kernels load and carry CUDA, each
    visible GPU and its architecture, and then per device and op the backend `auto` picks for each
    dtype, after every backend passed over with the reason. On a GPU it runs the self-checks of
    refcolor's CUDA and Triton kernels for that GPU (refcolor.backends: each kernel against the
    reference on small shapes, forward and backward), so a failing kernel shows with its error.
    REFCOLOR_BACKEND=reference forces the reference path (doctor says so). Exit status 1 if a
    self-check failed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

DEFAULT_DTYPES = ("float32", "float16", "bfloat16")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="the backend each op picks on each device (and GPU self-checks), with the reasons",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dtype",
        action="append",
        choices=("float16", "bfloat16", "float32", "float64"),
        help="dtypes to report (repeatable; default: float32 on CPU, float32, float16 and bfloat16 on GPUs)",
    )
    parser.set_defaults(run=run)


def ops() -> list:
    """The op modules of refcolor.ops that choose a backend (an OP name and a DTYPES table)."""
    import refcolor.ops

    found = []
    for info in pkgutil.iter_modules(refcolor.ops.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"refcolor.ops.{info.name}")
        if isinstance(getattr(module, "OP", None), str) and isinstance(getattr(module, "DTYPES", None), dict):
            found.append(module)
    return found


def report(dtypes: list[str] | None = None) -> tuple[list[str], bool]:
    """The doctor's lines, and whether every self-check that ran passed."""
    import torch

    import refcolor
    from refcolor import _extension, backends

    lines = [f"refcolor {refcolor.__version__} from {refcolor.__file__}"]
    lines.append(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    triton_error = backends._triton_import_error()
    if triton_error is None:
        import triton

        lines.append(f"triton {triton.__version__}")
    else:
        lines.append(triton_error)
    module = _extension.compiled_module()
    if module is None:
        lines.append(f"compiled kernels: not loaded ({_extension.load_error()})")
    else:
        lines.append(
            f"compiled kernels: C++ CPU yes, CUDA {'yes' if _extension.has_cuda_kernels() else 'no (built without)'}"
        )
    forced = backends.os.environ.get(backends.ENV_VAR, "auto")
    lines.append(f"{backends.ENV_VAR}={forced}" + (" (every op runs that backend)" if forced != "auto" else ""))
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = torch.device("cuda", index)
            devices.append(device)
            lines.append(f"cuda:{index}: {torch.cuda.get_device_name(index)}, {backends.gpu_arch(device)}")
    else:
        lines.append("GPUs: none visible to torch")
    modules = ops()
    for device in devices:
        names = dtypes or (["float32"] if device.type == "cpu" else list(DEFAULT_DTYPES))
        lines.append(f"{device}:")
        for module in modules:
            preference = getattr(module, "PREFERENCE", None)
            for name in names:
                dtype = getattr(torch, name)
                steps = backends.explain(module.OP, device, dtype, module.DTYPES, preference)
                chosen, why = steps[-1]
                passed_over = "; ".join(f"not {b}: {r}" for b, r in steps[:-1])
                lines.append(f"  {module.OP} {name}: {chosen} [{why}]" + (f" ({passed_over})" if passed_over else ""))
    ok = all(result is None for result in backends.verified_kernels().values())
    return lines, ok


def run(args) -> int:
    lines, ok = report(args.dtype)
    print("\n".join(lines))
    return 0 if ok else 1

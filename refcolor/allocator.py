"""The CPU memory allocator of refcolor's own commands: tcmalloc or jemalloc when installed.

Why: glibc's malloc returns large blocks to the kernel and maps them afresh on the next allocation,
so every large tensor (a 63 MB gradient, say) pays its page faults again; that cost can exceed the
kernel's own time (measured in issue 11: segment_hint_colors cpp forward + backward took 9 ms under
tcmalloc, 18-20 ms under jemalloc and 80-120 ms under glibc). PyTorch's CPU performance tuning
guide recommends either library. An allocator replaces malloc only when the dynamic linker loads it
before everything else (LD_PRELOAD), so `refcolor train|evaluate|colorize|guide|serve` re-executes
itself once with LD_PRELOAD set. `os.execv` keeps the process id, open files and the environment,
so a launcher that watches its workers (torchrun) sees the same process; every torchrun worker
makes the same choice from the same environment, and a launcher started under LD_PRELOAD passes
its allocator on, which is then kept as is.

REFCOLOR_ALLOCATOR chooses: "auto" (default: tcmalloc, else jemalloc, else the system's malloc),
"tcmalloc", "jemalloc" or "system" (never re-execute). This module imports nothing heavy: it runs
before torch is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "REFCOLOR_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "jemalloc", "system")
# Set in the re-executed process: never re-execute twice, even if the preload failed.
GUARD_VAR = "REFCOLOR_ALLOCATOR_REEXEC"
# Commands that allocate large CPU tensors for long enough for the allocator to matter.
COMMANDS = ("train", "evaluate", "colorize", "guide", "serve")
# Sonames in preference order per allocator (tcmalloc: minimal build first, it is all torch needs).
SONAMES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
# gperftools reports every allocation above 1 GiB on stderr (then above 2, 4, ... GiB); training
# makes such allocations routinely, so the report is silenced unless the user set a threshold.
QUIET_TCMALLOC = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


@dataclass(frozen=True)
class Decision:
    """What to do at start: `preload` a library and re-execute (None: keep running), and the line to log."""

    allocator: str  # "tcmalloc", "jemalloc" or "system"
    preload: str | None
    message: str


def loaded_allocator(maps_text: str | None = None) -> tuple[str, str] | None:
    """(name, path) of a tcmalloc or jemalloc mapped into this process, from /proc/self/maps."""
    if maps_text is None:
        try:
            maps_text = Path("/proc/self/maps").read_text()
        except OSError:  # not Linux
            return None
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path (absent if anonymous)
        path = fields[5] if len(fields) == 6 else ""
        name = os.path.basename(path)
        for allocator in SONAMES:
            if name.startswith(f"lib{allocator}"):
                return allocator, path
    return None


def _elf_machine(path: str) -> bytes | None:
    """ELF class, byte order and machine of a file (bytes 4-5 and 18-19), or None if not ELF."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return head[4:6] + head[18:20]


def _ldconfig_paths() -> dict[str, list[str]]:
    """soname -> paths known to the dynamic linker's cache (`ldconfig -p`), in its order."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None
    )
    if ldconfig is None:
        return {}
    try:
        text = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_ldconfig(text)


def parse_ldconfig(text: str) -> dict[str, list[str]]:
    """Parse `ldconfig -p` lines such as `\tlibjemalloc.so.2 (libc6,x86-64) => /usr/lib/.../libjemalloc.so.2`."""
    paths: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=>" not in line:
            continue
        left, path = line.rsplit("=>", 1)
        paths.setdefault(left.split()[0], []).append(path.strip())
    return paths


def _search_dirs() -> tuple[list[str], list[str]]:
    """(LD_LIBRARY_PATH folders, fallback folders): the dynamic linker searches the first before
    its cache and its default folders after it; this Python's lib folder is where conda and similar
    environments install the libraries."""
    first = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    defaults = [str(Path(sys.prefix) / "lib")]
    if multiarch:
        defaults += [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"]
    defaults += ["/usr/local/lib", "/usr/lib64", "/lib64", "/usr/lib", "/lib"]
    return first, defaults


def find_library(allocator: str, cache: dict[str, list[str]] | None = None) -> str | None:
    """Path of an installed `allocator` for this interpreter's architecture, or None.

    Looks where the dynamic linker would (LD_LIBRARY_PATH, its cache from `ldconfig -p`, its
    default folders) and in this Python's lib folder; skips files of another architecture."""
    cache = _ldconfig_paths() if cache is None else cache
    own = _elf_machine(sys.executable)
    first, defaults = _search_dirs()
    for soname in SONAMES[allocator]:
        paths = [os.path.join(d, soname) for d in first] + cache.get(soname, [])
        paths += [os.path.join(d, soname) for d in defaults]
        for path in paths:
            if os.path.isfile(path) and (own is None or _elf_machine(path) == own):
                return path
    return None


def decide(env: dict[str, str], loaded: tuple[str, str] | None, find=find_library) -> Decision:
    """The allocator of a command starting with environment `env` and `loaded` already mapped in."""
    choice = env.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}: expected one of {', '.join(CHOICES)}, got {env[ENV_VAR]!r}")
    if loaded is not None:
        name, path = loaded
        note = (
            "" if choice in ("auto", name) else f"; {ENV_VAR}={choice} ignored: it was loaded before refcolor started"
        )
        return Decision(name, None, f"{name} ({path}{note})")
    if choice == "system":
        return Decision("system", None, f"system malloc ({ENV_VAR}=system)")
    if env.get(GUARD_VAR):
        return Decision(
            "system",
            None,
            f"system malloc (preloading {env.get('LD_PRELOAD', '?')} failed; "
            "the dynamic linker's message above says why)",
        )
    wanted = ("tcmalloc", "jemalloc") if choice == "auto" else (choice,)
    for name in wanted:
        path = find(name)
        if path is not None:
            return Decision(name, path, f"{name} ({path})")
    if choice == "auto":
        return Decision(
            "system",
            None,
            "system malloc (neither tcmalloc nor jemalloc is installed; CPU ops run "
            "faster with one, e.g. `apt install libtcmalloc-minimal4`)",
        )
    return Decision("system", None, f"system malloc ({ENV_VAR}={choice} but no {choice} library was found)")


def reexec_environment(env: dict[str, str], library: str) -> dict[str, str]:
    """`env` with `library` preloaded first (the user's other preloads kept) and the loop guard set."""
    new = dict(env)
    new["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    new[GUARD_VAR] = "1"
    if "tcmalloc" in os.path.basename(library):
        for key, value in QUIET_TCMALLOC.items():
            new.setdefault(key, value)
    return new


def started_as_refcolor(argv0: str | None = None) -> bool:
    """True when this process is the `refcolor` command (console script or `python -m refcolor`),
    not another program (a test runner, say) that calls refcolor.cli.main() and must not be restarted."""
    path = Path(sys.argv[0] if argv0 is None else argv0)
    return path.name == "refcolor" or (path.name == "__main__.py" and path.parent.name == "refcolor")


def select_for_command(args: list[str], log=None) -> Decision | None:
    """At the start of `refcolor <args>`: for the COMMANDS, re-execute under tcmalloc/jemalloc when
    one is installed and not yet loaded (this call then does not return), and log which allocator
    runs (under torchrun: local rank 0 only). Returns the decision, or None for other commands,
    help and non-Linux systems."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in COMMANDS or "-h" in args or "--help" in args or not sys.platform.startswith("linux"):
        return None
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    decision = decide(dict(os.environ), loaded_allocator())
    if decision.preload is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        # sys.orig_argv is the interpreter's own command line (`python -m refcolor ...`, or the
        # console script's path): the new process starts exactly as this one did.
        argv = [sys.executable, *sys.orig_argv[1:]]
        try:
            os.execve(sys.executable, argv, reexec_environment(dict(os.environ), decision.preload))
        except OSError as exc:  # cannot happen for a running interpreter, but never fail a command over it
            decision = Decision("system", None, f"system malloc (re-executing under {decision.preload} failed: {exc})")
    if os.environ.get("LOCAL_RANK", "0") == "0":  # under torchrun, one line per node, not one per process
        log(f"refcolor {command}: memory allocator: {decision.message}")
    return decision

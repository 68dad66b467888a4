"""The GPU code checked for real targets without a GPU (issue 28): scripts/gpu_static_check.py's
cubin parsing and occupancy, and the Triton launches captured on fake CUDA tensors (every kernel
reached, a device guard around each launch, TF32 exactly when torch allows it, autotune keys), with
one kernel compiled for sm_80 and sm_90 by Triton's own compiler. scripts/cuda_build_check.sh
compiles every kernel and config (run by .ci/run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_static_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_static_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_static_check"] = module
    spec.loader.exec_module(module)
    return module


g = _load()


def test_occupancy_follows_registers_warps_and_shared_memory():
    h100 = g.ARCHS[90]
    assert g.occupancy(h100, regs=32, threads=256, smem=0) == (8, 1.0, "warps")
    # 128 registers x 256 threads: 32 K registers per block, two blocks fill the 64 K file.
    assert g.occupancy(h100, regs=128, threads=256, smem=0) == (2, 0.25, "registers")
    # 100 KB of shared memory (+1 KB reserved) per block: two fit in 228 KB.
    blocks, fraction, limiter = g.occupancy(h100, regs=32, threads=128, smem=100 * 1024)
    assert (blocks, limiter) == (2, "shared memory") and fraction == pytest.approx(8 / 64)
    # Registers are allocated per warp in units of 256: 33 registers count as 40.
    assert g.occupancy(h100, regs=33, threads=1024, smem=0)[0] == 1


def test_judge_fails_launches_over_the_limits_and_spills_in_loops():
    row = g.Row("csrc/x", "k", "", 90, g.Resources(regs=255, max_threads=512))
    g.judge(row)
    assert any("exceed the 65536 per SM" in p for p in row.problems)
    row = g.Row("kernels/x.py", "k", "", 80, g.Resources(regs=64, max_threads=128), dynamic_smem=200 * 1024)
    g.judge(row)
    assert any("shared memory per block (the limit is 166912)" in p for p in row.problems)
    row = g.Row("kernels/x.py", "k", "", 90, g.Resources(regs=64, max_threads=128, spills=3, spills_in_loops=1))
    g.judge(row)
    assert row.problems == ["1 local-memory (spill) instructions inside loops"]
    ok = g.Row("kernels/x.py", "k", "", 90, g.Resources(regs=64, max_threads=128, spills=2), dynamic_smem=4096)
    g.judge(ok)
    assert ok.problems == [] and ok.occupancy.startswith("50%")


RES_USAGE = """
Fatbin elf code:
================
arch = sm_80
code version = [1,8]

Resource usage:
 Common:
  GLOBAL:0
 Function _Z6kernelPf:
  REG:40 STACK:16 SHARED:128 LOCAL:8 CONSTANT[0]:900 TEXTURE:0 SURFACE:0 SAMPLER:0

Fatbin elf code:
================
arch = sm_90
code version = [1,8]

Resource usage:
 Function _Z6kernelPf:
  REG:38 STACK:0 SHARED:128 LOCAL:0 CONSTANT[0]:900 TEXTURE:0 SURFACE:0 SAMPLER:0
"""

SASS = """
	code for sm_90
		Function : _Z6kernelPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   STL [R1], R2 ;
.L_x_0:
        /*0020*/                   LDL R3, [R1] ;
        /*0030*/                   ISETP.GE.AND P0, PT, R4, R5, PT ;
        /*0040*/               @!P0 BRA `(.L_x_0) ;
        /*0050*/                   BRA `(.L_x_1) ;
.L_x_1:
        /*0060*/                   STL.64 [R1+0x8], R6 ;
        /*0070*/                   EXIT ;
"""


ELF = """
arch = sm_90
.nv.info._Z6kernelPf
	<0x1>
	Attribute:	EIATTR_KPARAM_INFO
	Format:	EIFMT_SVAL
	Value:	Index : 0x0	Ordinal : 0x0	Offset  : 0x0	Size    : 0x8
	<0x2>
	Attribute:	EIATTR_MAX_THREADS
	Format:	EIFMT_SVAL
	Value:	0x100 0x1 0x1
.nv.info._Z5otherv
	Attribute:	EIATTR_CRS_STACK_SIZE
	Format:	EIFMT_SVAL
	Value:	0x0
"""


def test_launch_bounds_are_read_from_the_elf_listing():
    assert g.parse_max_threads(ELF) == {(90, "_Z6kernelPf"): 256}


def test_cuobjdump_listings_are_parsed_per_arch():
    found = g.parse_res_usage(RES_USAGE)
    assert found[(80, "_Z6kernelPf")] == g.Resources(regs=40, stack=16, local=8, shared=128)
    assert found[(90, "_Z6kernelPf")].regs == 38
    # A lone cubin's listing names no arch: the caller's.
    spills = g.parse_sass_spills(SASS, 90)
    assert spills == {(90, "_Z6kernelPf"): (3, 1)}  # three STL/LDL; only the LDL sits in the loop


_CAPTURE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch
import gpu_static_check as g
from torch._subclasses.fake_tensor import FakeTensorMode

out = {}
launches, missing = g.capture_all("cuda:0")
out["missing"] = missing
out["kernels"] = sorted({f"{l.module}.{l.kernel.fn.__name__}" for l in launches})
guarded, _ = g.capture_all("cuda:1")
out["guard_problems"] = g.guard_problems(guarded)
out["guards"] = sorted({l.guard for l in guarded})
out["autotune_keys"] = sorted({tuple(l.autotune_keys) for l in launches if l.autotune_keys})

from refcolor.kernels import scft_attention as sa
precision = {}
for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    for dtype in (torch.float32, torch.float16, torch.float64):
        with g.capture_launches() as got, FakeTensorMode(allow_non_fake_inputs=True):
            q = torch.empty(1, 40, 24, device="cuda", dtype=dtype)
            sa.flash_forward(q, q, q, None, 0.5)
        precision[f"{tf32}-{dtype}"] = got[0].kwargs["DOT_PRECISION"]
out["precision"] = precision
torch.backends.cuda.matmul.allow_tf32 = False

# Every autotune config is its own compilation: none may be merged away as a duplicate.
flash = [l for l in launches if l.kernel.fn.__name__ == "_flash_forward_kernel"]
keys = {g._signature_key(l, c) for l in flash for c in l.configs}
n = {kind: len(configs) for kind, configs in sa._CUDA_CONFIGS.items()}
out["flash_compilations"] = [len(keys), 2 * (2 * n["16bit"] + 2 * n["float32"] + n["float64"])]  # fp32: IEEE and TF32

# One real compilation per target: the row softmax (float32, M = 256) for sm_80 and sm_90.
one = [l for l in launches if l.kernel.fn.__name__ == "_softmax_rows_kernel"][:1]
rows = g.triton_rows([80, 90], one)
for row in rows:
    g.judge(row)
out["compiled"] = [(r.sm, r.res.regs, r.res.max_threads, r.problems) for r in rows]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def captured():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "0"}  # real JIT functions, never run: captured and compiled
    result = subprocess.run(
        [sys.executable, "-c", _CAPTURE, str(ROOT / "scripts")], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_triton_kernel_is_reached_by_a_launcher(captured):
    assert captured["missing"] == []
    names = {p.stem for p in (ROOT / "kernels").glob("*.py") if p.stem != "__init__"}
    assert {k.split(".")[0] for k in captured["kernels"]} == names


def test_every_triton_launch_runs_under_its_tensors_device(captured):
    """Triton launches on the current device: tensors on cuda:1 need torch.cuda.device(1) around
    the launch (checked with torch.cuda.device replaced by a recorder)."""
    assert captured["guard_problems"] == []
    assert captured["guards"] == [1]


def test_tf32_in_tl_dot_exactly_when_torch_allows_it(captured):
    assert captured["precision"] == {
        "False-torch.float32": "ieee",
        "False-torch.float16": "ieee",
        "False-torch.float64": "ieee",
        "True-torch.float32": "tf32",
        "True-torch.float16": "ieee",
        "True-torch.float64": "ieee",
    }


def test_autotune_keys_hold_every_shape_argument(captured):
    (keys,) = captured["autotune_keys"]
    assert set(keys) == {"N", "M", "D", "DV", "HAS_RESIDUAL", "DOT_PRECISION"}


def test_every_autotune_config_is_compiled(captured):
    """Per dtype (float16 and bfloat16 share the 16-bit configs; float32 with IEEE and TF32 dots),
    with and without a residual."""
    found, expected = captured["flash_compilations"]
    assert found == expected


def test_a_triton_kernel_compiles_for_sm80_and_sm90_without_a_gpu(captured):
    compiled = {sm: (regs, threads, problems) for sm, regs, threads, problems in captured["compiled"]}
    assert set(compiled) == {80, 90}
    for regs, threads, problems in compiled.values():
        assert 0 < regs <= 255 and threads % 32 == 0 and problems == []


def test_sync_tree_rewrites_only_changed_files(tmp_path):
    """scripts/cuda_build_check.sh's copy of the checkout: an edit gets a new mtime however old it is
    (ninja compares mtimes), untouched files keep theirs, deleted files go, build outputs stay."""
    spec = importlib.util.spec_from_file_location("sync_tree", ROOT / "scripts" / "sync_tree.py")
    sync_tree = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync_tree)
    root, copy = tmp_path / "root", tmp_path / "copy"
    (root / "csrc").mkdir(parents=True)
    for name in ("a.cpp", "b.cpp", "gone.cpp"):
        (root / "csrc" / name).write_text(name)
    assert sync_tree.sync(root, copy) == 3
    (copy / "x.so").write_text("built")
    past = 1_000_000_000
    for name in ("a.cpp", "b.cpp"):
        os.utime(copy / "csrc" / name, (past, past))
    (root / "csrc" / "a.cpp").write_text("edited")
    os.utime(root / "csrc" / "a.cpp", (past - 10, past - 10))  # an edit older than the copy's file
    (root / "csrc" / "gone.cpp").unlink()
    assert sync_tree.sync(root, copy) == 1
    assert (copy / "csrc" / "a.cpp").read_text() == "edited" and (copy / "csrc" / "a.cpp").stat().st_mtime > past
    assert (copy / "csrc" / "b.cpp").stat().st_mtime == past
    assert not (copy / "csrc" / "gone.cpp").exists() and (copy / "x.so").exists()

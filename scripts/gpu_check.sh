#!/usr/bin/env bash
# One-shot GPU check (issue 11): on a machine with CUDA torch, nvcc and one GPU, from any directory,
#   bash scripts/gpu_check.sh
# builds refcolor with its CUDA kernels into the python3 found there (never installing or
# downloading torch), runs every CUDA/Triton test on the real kernels, then every GPU benchmark, and
# writes benchmarks/results/<device>.{json,md,log}: each figure with its floor and each target's
# PASS/FAIL. Each step has a time budget, and the whole run stops starting steps after
# GPU_CHECK_BUDGET_S seconds (default 465: within 8 minutes on an H100/H200, build included); a
# failed step does not stop the others, and the end of the log names it. When $OUT is set (the
# device tool's folder of returned files), the log, the JSON and the Markdown are copied there too.
# Exit status: 0 if every step finished, 1 otherwise (a missed speed target is reported, not fatal).
#
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S, GPU_CHECK_TEST_WORKERS (pytest-xdist
# workers, default 8), MAX_JOBS (default 16), GPU_CHECK_RESULTS (default benchmarks/results), and
# GPU_CHECK_SMOKE=1: a dry run of this script on a CPU machine (no build, tests collected only,
# benchmarks with --smoke at toy sizes) to check the script itself; its figures mean nothing. Python wheels missing on the machine (kornia, the
# TPS baseline) are installed from ./.whl/ when that folder exists (benchmarks/README.md says how
# to carry them).
# shellcheck disable=SC2317  # the step functions are run through `timeout bash -c`
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

export PYTHON=${PYTHON:-python3}
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-465}))
export SMOKE=${GPU_CHECK_SMOKE:-0}
RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
BENCH=(--out "$RESULTS")
SMOKE_FLAG=()
((SMOKE)) && SMOKE_FLAG=(--smoke) && BENCH+=(--smoke)
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
export WORK
LOG=$WORK/gpu_check.log
STEPS=$WORK/steps.tsv
: >"$STEPS"

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET  # the real Triton kernels, never the interpreter (conftest.py sets it only without CUDA)
export MAX_JOBS=${MAX_JOBS:-16}

say() { printf '\n==== [%s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - START))" "$*"; }

# step NAME BUDGET_S COMMAND...: run COMMAND under `timeout`, capped by the time left before the
# deadline (10 s kept for the report); record ok / failed (rc) / timeout / skipped in $STEPS.
step() {
  local name=$1 budget=$2
  shift 2
  local left=$((DEADLINE - $(date +%s) - 10))
  ((budget > left)) && budget=$left
  if ((budget < 15)); then
    say "$name: skipped, no time left"
    printf '%s\tskipped (no time left)\t0\n' "$name" >>"$STEPS"
    return 1
  fi
  say "$name (budget ${budget}s): $*"
  local t0 rc status
  t0=$(date +%s)
  # bash -c: the step may be one of the functions below (exported), which `timeout` cannot run itself.
  timeout --kill-after=10 "$budget" bash -c '"$@"' "$name" "$@"
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${budget}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" >>"$STEPS"
  say "$name: $status"
  [ "$status" = ok ]
}

probe() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true
  command -v nvcc && nvcc --version | tail -2
  "$PYTHON" - <<'EOF'
import os, sys, torch
print(f"python {sys.version.split()[0]} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}")
for name in ("triton", "setuptools", "pytest", "pytest_benchmark", "xdist", "kornia"):
    try:
        module = __import__(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        print(f"{name}: not importable ({exc})")
if os.environ["SMOKE"] == "1":
    print("GPU_CHECK_SMOKE=1: CPU dry run")
elif torch.version.cuda is None or not torch.cuda.is_available():
    sys.exit("this torch has no CUDA or sees no GPU: the check needs both (it never installs torch)")
else:
    print(f"device: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
EOF
}

install_wheels() {
  # --no-index: nothing is fetched; --no-deps: torch and the rest stay the machine's own.
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl
}

build() {
  if ((SMOKE)); then
    echo "GPU_CHECK_SMOKE=1: no build, the installed refcolor is used"
  else
    local arch
    arch=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || return 1
    # Only this GPU's architecture: a full arch list would multiply the nvcc time.
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index \
      --no-cache-dir -e . || return 1
  fi
  "$PYTHON" - <<'EOF'
import refcolor
from refcolor import _extension
from refcolor.backends import triton_interpreter_enabled
print("backends:", refcolor.available_backends())
import os
assert os.environ["SMOKE"] == "1" or _extension.has_cuda_kernels(), f"refcolor._C has no CUDA kernels ({_extension.load_error()})"
assert not triton_interpreter_enabled(), "TRITON_INTERPRET is on: the tests would not run the real kernels"
EOF
}

gpu_tests() {
  # Every test whose id names a CUDA or Triton backend or device ("cuda", "triton", "gpu"), and the
  # backend-discovery tests; benchmarks/ too (each GPU benchmark case runs once, --benchmark-disable).
  local workers=${GPU_CHECK_TEST_WORKERS:-8} xdist=()
  "$PYTHON" -c "import xdist" 2>/dev/null && ((workers > 1)) && xdist=(-n "$workers")
  ((SMOKE)) && xdist=(--collect-only)
  "$PYTHON" -m pytest tests benchmarks -k "cuda or triton or gpu or test_backends" "${xdist[@]}" \
    -q -rfE -p no:cacheprovider --junitxml="$WORK/tests.xml"
}

export -f probe install_wheels build gpu_tests

main() {
say "refcolor GPU check in $(pwd), budget $((DEADLINE - START)) s"
probe_ok=1
step probe 45 probe || probe_ok=0
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
  step wheels 60 install_wheels && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ((probe_ok)); then
  # A fresh results file: figures left from an earlier run must not pass for this run's (git keeps them).
  old=$("$PYTHON" -m benchmarks.gpu_common device-file --out "$RESULTS" "${SMOKE_FLAG[@]}") &&
    rm -f "$old" "${old%.json}.md" && echo "results go to $old (any earlier one removed)"
  step build 200 build
  step tests 110 gpu_tests
  step bench_segment_hint_colors 50 "$PYTHON" -m benchmarks.gpu_segment_hint_colors "${BENCH[@]}"
  step bench_tps_warp 50 "$PYTHON" -m benchmarks.gpu_tps_warp "${BENCH[@]}"
  step bench_region_mean 40 "$PYTHON" -m benchmarks.gpu_region_mean "${BENCH[@]}"
  step bench_scft_attention 120 "$PYTHON" -m benchmarks.gpu_scft_attention "${BENCH[@]}"
  step bench_train_step 120 "$PYTHON" -m benchmarks.gpu_train_step "${BENCH[@]}"
fi

say "report"
json=$("$PYTHON" -m benchmarks.gpu_common device-file --out "$RESULTS" "${SMOKE_FLAG[@]}" 2>/dev/null) || json=$RESULTS/no-cuda-device.json
echo "$json" >"$WORK/json_path"
"$PYTHON" -m benchmarks.gpu_common steps "$json" "$STEPS" || cat "$STEPS"
failed=$(awk -F'\t' '$2 != "ok" {print $1}' "$STEPS" | paste -sd, -)
if [ -n "$failed" ]; then say "done in $(($(date +%s) - START)) s; FAILED STEPS: $failed"
else say "done in $(($(date +%s) - START)) s; every step finished"; fi
[ -z "$failed" ]
}

main 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
json=$(cat "$WORK/json_path" 2>/dev/null) || json=$RESULTS/no-cuda-device.json
cp "$LOG" "${json%.json}.log"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  for f in "$json" "${json%.json}.md" "${json%.json}.log"; do [ -f "$f" ] && cp "$f" "$OUT"/; done
  [ -f "$WORK/tests.xml" ] && cp "$WORK/tests.xml" "$OUT/gpu_check_tests.xml"
fi
exit "$rc"

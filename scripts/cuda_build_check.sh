#!/usr/bin/env bash
# The GPU build, proven on a machine without a GPU (issue 28):
#   bash scripts/cuda_build_check.sh
# 1. A separate venv with PyPI's CUDA torch (torch==<the floor in pyproject.toml>, for Linux the
#    CUDA 13.0 build, +cu130, with its CUDA wheels), cached in $CUDA_CHECK_CACHE (default
#    ~/.cache/refcolor-cuda-check), one venv per Python and torch version: the first run downloads
#    about 4.7 GB, later runs reuse it.
# 2. refcolor's extension built there with FORCE_CUDA=1 for TORCH_CUDA_ARCH_LIST (default
#    "8.0;9.0;10.0": sm_80, sm_90, sm_100), from a copy of this checkout kept in the cache so that
#    ninja recompiles only the sources that changed.
# 3. `import refcolor` there, and every CUDA op of csrc/*/cuda/ registered with torch's dispatcher
#    (ops found from the sources, not listed here).
# 4. scripts/gpu_static_check.py: registers, spills, shared memory and occupancy of every CUDA kernel
#    per arch and of every Triton kernel at every autotune config for sm_80 and sm_90, written to
#    benchmarks/results/cuda-static.md; it fails on spills inside loops or an arch's limits exceeded.
# Exit status 0 only if every step passed. Nothing runs on a GPU.
#
# Environment: CUDA_CHECK_CACHE, CUDA_CHECK_ARCHS (TORCH_CUDA_ARCH_LIST form), CUDA_CHECK_TRITON_ARCHS
# (default 80,90), CUDA_CHECK_OUT (default benchmarks/results/cuda-static.md), CUDA_HOME (default
# /usr/local/cuda), PYTHON (default python3), MAX_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
say() { printf '==== [+%ss] %s\n' "$(($(date +%s) - START))" "$*"; }

PYTHON=${PYTHON:-python3}
CACHE=${CUDA_CHECK_CACHE:-$HOME/.cache/refcolor-cuda-check}
ARCHS=${CUDA_CHECK_ARCHS:-8.0;9.0;10.0}
TRITON_ARCHS=${CUDA_CHECK_TRITON_ARCHS:-80,90}
OUT=${CUDA_CHECK_OUT:-benchmarks/results/cuda-static.md}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export MAX_JOBS=${MAX_JOBS:-2}
# The torch this checks is the floor pyproject.toml declares (one version in both lists): the
# floor is then the version the CUDA build is proven against.
TORCH_VERSION=$("$PYTHON" scripts/torch_floor.py)
PY_TAG=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
VENV=$CACHE/venv-py$PY_TAG-torch-$TORCH_VERSION
SRC=$CACHE/src-py$PY_TAG-torch-$TORCH_VERSION

# pip against PyPI alone: this machine's pip configuration adds a local mirror whose torch is the
# CPU build (same version number), which pip would otherwise prefer.
pypi_pip() {
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT -u PIP_NO_INDEX \
    PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip --disable-pip-version-check "$@"
}

if [ ! -f "$VENV/.complete" ]; then
  say "creating $VENV with PyPI's torch==$TORCH_VERSION (CUDA build, about 4.7 GB on first download)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  pypi_pip install -q --progress-bar off --index-url https://pypi.org/simple \
    "torch==$TORCH_VERSION" numpy pillow "kornia>=0.7" "safetensors>=0.4" "setuptools>=77" wheel ninja
  touch "$VENV/.complete"
else
  say "reusing $VENV"
fi
"$VENV/bin/python" - "$TORCH_VERSION" <<'EOF'
import sys
import torch
from packaging.version import Version
want = sys.argv[1]
if Version(torch.__version__.split("+")[0]) != Version(want) or torch.version.cuda is None:
    sys.exit(f"cuda_build_check: the venv holds torch {torch.__version__} (CUDA {torch.version.cuda}), "
             f"not PyPI's CUDA build of {want}; delete it and rerun")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}")
EOF

say "syncing the checkout's files to $SRC (changed files only: ninja rebuilds what changed)"
mkdir -p "$SRC"
"$PYTHON" scripts/sync_tree.py "$ROOT" "$SRC" --exclude benchmarks/results/
ln -sfn ../kernels "$SRC/refcolor/kernels" # refcolor.kernels, as pyproject.toml's package-dir maps it

say "building the extension: FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST='$ARCHS' MAX_JOBS=$MAX_JOBS"
BUILD_LOG=$CACHE/build.log
t0=$(date +%s)
if ! (cd "$SRC" && FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCHS" "$VENV/bin/python" setup.py build_ext --inplace \
  >"$BUILD_LOG" 2>&1); then
  tail -40 "$BUILD_LOG"
  echo "cuda_build_check: the CUDA build failed (log: $BUILD_LOG)" >&2
  exit 1
fi
say "built in $(($(date +%s) - t0)) s: $(ls "$SRC"/refcolor/_C*.so)"

say "importing refcolor and checking the dispatcher's CUDA kernels"
(cd "$SRC" && PYTHONPATH=$SRC TRITON_INTERPRET=0 "$VENV/bin/python" scripts/cuda_dispatch_check.py)

say "static resource check: CUDA kernels for $ARCHS, Triton kernels for $TRITON_ARCHS"
cuda_archs=$(echo "$ARCHS" | tr ';' '\n' | sed 's/+PTX//; s/\.//' | paste -sd, -)
triton_version=$("$VENV/bin/python" -c 'import triton; print(triton.__version__)')
status=0
(cd "$SRC" && PYTHONPATH=$SRC TRITON_INTERPRET=0 "$VENV/bin/python" scripts/gpu_static_check.py \
  --cuda-so "$(ls refcolor/_C*.so)" --archs "$cuda_archs" --triton --triton-archs "$TRITON_ARCHS" \
  --out "$SRC/cuda-static.md" \
  --note "torch $TORCH_VERSION (PyPI, CUDA $("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')), \
nvcc $("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), triton $triton_version, \
built and compiled with no GPU by scripts/cuda_build_check.sh") || status=$?
mkdir -p "$(dirname "$OUT")"
cp "$SRC/cuda-static.md" "$OUT"
say "wrote $OUT"
if ((status)); then
  echo "cuda_build_check: FAILED (see $OUT)" >&2
  exit "$status"
fi
say "cuda_build_check: passed"

#!/usr/bin/env bash
# CPU benchmarks under each memory allocator (issue 11: report every CPU benchmark under both):
#   scripts/cpu_benchmarks.sh [PYTEST ARGS...]      e.g. benchmarks/test_bench_segment_hint_colors.py -k cpp
# runs `pytest benchmarks --benchmark-enable` (or the given files / selection) once per allocator,
# glibc's malloc and tcmalloc by default (CPU_BENCH_ALLOCATORS="system tcmalloc jemalloc" adds
# jemalloc), and writes benchmarks/results/cpu-<cpu model>-<cores>c.md: one table comparing the
# medians, then each run's full statistics. Allocators are preloaded with LD_PRELOAD, the same way
# `refcolor train` does it (refcolor/allocator.py); the one a run used is checked in a process
# started like it. Debian: apt install libtcmalloc-minimal4 libjemalloc2.
# Environment: PYTHON (default python3), CPU_BENCH_ALLOCATORS, CPU_BENCH_OUT (the .md path).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
ALLOCATORS=${CPU_BENCH_ALLOCATORS:-system tcmalloc}
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
model=${model:-$(uname -m)}
slug=$(printf '%s' "$model" | tr -cs 'A-Za-z0-9._-' '_' | sed 's/^_*//; s/_*$//')
OUTFILE=${CPU_BENCH_OUT:-benchmarks/results/cpu-${slug}-$(nproc)c.md}
WORK=$(mktemp -d /tmp/cpu_benchmarks.XXXXXX)
ARGS=("$@")
((${#ARGS[@]})) || ARGS=(benchmarks)

for name in $ALLOCATORS; do
  preload=""
  if [ "$name" != system ]; then
    preload=$("$PYTHON" -c "import sys; from refcolor.allocator import find_library; print(find_library(sys.argv[1]) or '')" "$name")
    if [ -z "$preload" ]; then
      echo "cpu_benchmarks.sh: $name not installed (Debian: libtcmalloc-minimal4 / libjemalloc2); skipped" >&2
      continue
    fi
  fi
  loaded=$(LD_PRELOAD=$preload "$PYTHON" -c "from refcolor.allocator import loaded_allocator as l; a = l(); print(a[0] if a else 'system')")
  if [ "$loaded" != "$name" ]; then
    echo "cpu_benchmarks.sh: asked for $name, the process runs $loaded" >&2
    exit 1
  fi
  echo "==== $name ${preload:+(LD_PRELOAD=$preload)}: pytest ${ARGS[*]} --benchmark-enable"
  LD_PRELOAD=$preload "$PYTHON" -m pytest "${ARGS[@]}" --benchmark-enable -q -p no:cacheprovider \
    --benchmark-json="$WORK/$name.json" --benchmark-columns=min,median,mean,stddev,rounds
  echo "$name" >>"$WORK/order"
done

mkdir -p "$(dirname "$OUTFILE")"
"$PYTHON" - "$WORK" "$OUTFILE" "$model" "${ARGS[*]}" <<'EOF'
import json, os, sys, time
from pathlib import Path

import torch

work, outfile, model, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
order = work.joinpath("order").read_text().split() if work.joinpath("order").exists() else []
runs = {name: json.loads(work.joinpath(f"{name}.json").read_text())["benchmarks"] for name in order}
label = {"system": "glibc malloc", "tcmalloc": "tcmalloc", "jemalloc": "jemalloc"}
lines = [f"# CPU benchmarks: {model}, {os.cpu_count()} cores", "",
         f"`scripts/cpu_benchmarks.sh {args}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
         f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average at the end "
         f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (other jobs on the machine make the figures noisy: "
         "compare ratios within one run).", ""]
if runs:
    names = list(dict.fromkeys(b["fullname"] for run in runs.values() for b in run))
    medians = {a: {b["fullname"]: b["stats"]["median"] * 1e3 for b in run} for a, run in runs.items()}
    first = order[0]
    head = ["benchmark", *(f"{label[a]} median ms" for a in order), *(f"{label[first]} / {label[a]}" for a in order[1:])]
    lines += ["## Medians side by side", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for n in names:
        cells = [n.split("::", 1)[-1]] + [f"{medians[a][n]:.3f}" if n in medians[a] else "-" for a in order]
        cells += [f"{medians[first][n] / medians[a][n]:.2f}x" if n in medians[a] and n in medians[first] else "-"
                  for a in order[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for a in order:
        lines += [f"## {label[a]}", "", "| benchmark | min ms | median ms | mean ms | stddev ms | rounds |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for b in runs[a]:
            s = b["stats"]
            lines.append(f"| {b['fullname'].split('::', 1)[-1]} | {s['min'] * 1e3:.3f} | {s['median'] * 1e3:.3f} | "
                         f"{s['mean'] * 1e3:.3f} | {s['stddev'] * 1e3:.3f} | {s['rounds']} |")
        lines.append("")
else:
    lines.append("No allocator ran.")
outfile.write_text("\n".join(lines))
print(f"wrote {outfile}")
EOF
rm -rf "$WORK"

"""Mutation score of refcolor/ops, refcolor/inference and refcolor/nn (issue 16).

One command, from the repository root, in a venv with the `test` extra and mutmut installed:

    pip install mutmut==3.8.1
    nice -n 10 python scripts/mutation_score.py            # default sample: 100 mutants per module, seed 16
    python scripts/mutation_score.py --per-module 0        # every mutant (hours on 2 cores)
    python scripts/mutation_score.py --report-only         # re-read the results of the last run
    python scripts/mutation_score.py --modules refcolor/ops refcolor/nn   # a subset of the three modules

What it does:
1. mutmut (configured in pyproject.toml, [tool.mutmut]) copies the package to ./mutants and writes every
   mutant of the three modules into it (mutmut's "trampoline": all mutants in one copy, switched on by name).
2. The mutants of each module are sorted by name and shuffled with a fixed seed; the first N of each are the
   sample. The definition (seed, N, sorted names) is stable, so an AFTER run on a changed tree draws the same
   way from its own mutants. The full population would take hours on a 2-core machine.
3. `mutmut run <sample>` runs each sampled mutant, in one worker, against the tests of
   [tool.mutmut].pytest_add_cli_args_test_selection that executed the mutated function (mutmut records this
   in a first, unmutated run of those tests).
4. Per module: killed / survived / timeout / no tests, the score killed / (killed + survived + timeout + no
   tests) (a timeout counts as not killed: the suite did not catch the fault, it hung or slowed; a mutant no
   test executes survives by definition), with a 95% Wilson interval for the population score. The surviving
   mutant names go to mutants/mutation_survivors.txt; `mutmut show NAME` prints a diff. The summary goes to
   mutants/mutation_score.json.

`mutants/` is a scratch directory (git-ignored); delete it before a run on a changed tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

MODULES = ("refcolor/ops", "refcolor/inference", "refcolor/nn")
KILLED = {"killed", "segfault"}  # a crash of the test process caught the fault too


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def module_of(path: Path) -> str:
    for module in MODULES:
        if str(path).startswith(module + "/"):
            return module
    raise ValueError(f"{path} is outside {MODULES}")


def load_mutation_data():
    """{module: [(mutant name, exit code or None)]} from mutmut's per-file .meta records."""
    from mutmut.__main__ import SourceFileMutationData
    from mutmut.utils.file_utils import walk_mutatable_files

    by_module: dict[str, list[tuple[str, int | None]]] = {module: [] for module in MODULES}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        by_module[module_of(path)] += sorted(data.exit_code_by_key.items())
    return by_module


def generate_mutants() -> None:
    """mutmut's own generation step (the first part of `mutmut run`), without running anything."""
    import mutmut.__main__ as mutmut_main

    mutmut_main.set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    mutmut_main.copy_src_dir()
    mutmut_main.copy_also_copy_files()
    mutmut_main.create_mutants(1)


def draw_sample(by_module, per_module: int, seed: int) -> dict[str, list[str]]:
    sample = {}
    for module, mutants in by_module.items():
        names = sorted(name for name, _ in mutants)
        random.Random(f"{seed}:{module}").shuffle(names)
        sample[module] = names if per_module <= 0 else names[:per_module]
    return sample


def report(sample: dict[str, list[str]], seed: int) -> dict:
    from mutmut.stats import status_by_exit_code

    exit_codes = {name: code for mutants in load_mutation_data().values() for name, code in mutants}
    summary: dict = {"seed": seed, "modules": {}}
    survivors = []
    for module, names in sample.items():
        counts: dict[str, int] = {}
        for name in names:
            status = status_by_exit_code[exit_codes.get(name)]
            status = "killed" if status in KILLED else status
            counts[status] = counts.get(status, 0) + 1
            if status != "killed":
                survivors.append(f"{status}\t{name}")
        decided = sum(n for status, n in counts.items() if status != "not checked")
        killed = counts.get("killed", 0)
        low, high = wilson_interval(killed, decided)
        summary["modules"][module] = {
            "population": len([1 for n in exit_codes if n.startswith(module.replace("/", ".") + ".")]),
            "sampled": len(names),
            "counts": counts,
            "score": killed / decided if decided else None,
            "ci95": [low, high],
        }
    Path("mutants/mutation_survivors.txt").write_text("\n".join(sorted(survivors)) + "\n")
    Path("mutants/mutation_score.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{'module':22} {'population':>10} {'sampled':>7} {'killed':>6} {'survived':>8} {'timeout':>7} "
        f"{'no tests':>8} {'other':>5}  score  (95% CI)"
    )
    for module, row in summary["modules"].items():
        c = row["counts"]
        other = sum(n for s, n in c.items() if s not in ("killed", "survived", "timeout", "no tests"))
        score = "n/a" if row["score"] is None else f"{row['score']:.1%}"
        print(
            f"{module:22} {row['population']:>10} {row['sampled']:>7} {c.get('killed', 0):>6} "
            f"{c.get('survived', 0):>8} {c.get('timeout', 0):>7} {c.get('no tests', 0):>8} {other:>5}  "
            f"{score} ({row['ci95'][0]:.1%}-{row['ci95'][1]:.1%})"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-module", type=int, default=100, help="mutants sampled per module (0: all)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--report-only", action="store_true", help="summarise the last run without running")
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES), help="modules to sample")
    args = parser.parse_args()
    if not Path("pyproject.toml").exists() or not Path("refcolor").is_dir():
        sys.exit("run from the repository root")

    generate_mutants()
    sample = draw_sample(load_mutation_data(), args.per_module, args.seed)
    sample = {module: names for module, names in sample.items() if module in args.modules}
    if not args.report_only:
        names = [name for names in sample.values() for name in names]
        # One worker: the machine's cores are shared, and the tests set their own thread counts.
        subprocess.run(["mutmut", "run", "--max-children", "1", *names], check=False)
    report(sample, args.seed)


if __name__ == "__main__":
    main()

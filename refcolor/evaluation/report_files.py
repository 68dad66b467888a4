"""The file set every evaluation writes: NAME.csv and NAME.md, and NAME.png when matplotlib (the
optional extra refcolor[plot]) is installed."""

from __future__ import annotations

import os
from pathlib import Path


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report_files(
    result, out_dir: str | os.PathLike, name: str, title: str, write_csv, write_markdown, plot_results
) -> dict[str, Path]:
    """An evaluation's report under out_dir (created): name.csv and name.md, and name.png when
    matplotlib is installed; -> {"csv": path, "md": path[, "png": path]}. Shared by the guide, scft
    and exemplar evaluations, which differ only in what they write."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}
    write_csv(result, paths["csv"])
    write_markdown(result, paths["md"], title)
    if plotting_available():
        paths["png"] = out_dir / f"{name}.png"
        plot_results(result, paths["png"], title)
    return paths


__all__ = ["plotting_available", "write_report_files"]

"""GuidingPainter's evaluation protocol (Cho et al. 2022, Sec. 4): PSNR against the number of hints.

For every image of a folder (ImageFolder at the model's image_size, sorted, centre crops) the
target Y is the image in [-1, 1] and the sketch X its XDoG outline with the fixed default
parameters. For n = 0..Nc the model colorizes X with hints simulated from Y: the first n regions
painted with their mean target colour. The regions are counted as `refcolor guide` numbers them for
the user: the region channels that hold a pixel of the sketch, in priority order (a channel the
argmax leaves empty is no region a person could colour, so it is no hint); n hints are therefore
GuidingPainter.forward in eval mode with num_hints = the channels up to and including the n-th
region's (regions_to_channels), and n beyond a sketch's regions hints all of them. PSNR is measured
per image on [0, 1] images and averaged; everything is deterministic.

For context the result also holds the PSNR of the all-regions hint map itself (every region filled
with its mean colour): what a perfect flat fill of the model's regions scores, and how many regions
the model proposes per sketch: its region channels that hold any pixel of the argmax segmentation
(what `refcolor guide` numbers for the user), and those that cover at least MIN_REGION_AREA of the
image (a region a person would bother to pick a colour for).

Outputs: write_report -> psnr_vs_hints.csv and .md, and psnr_vs_hints.png when matplotlib is
installed (the extra refcolor[plot]).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.data.image_folder import ImageFolder, sample_images_dir
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.evaluation.report_files import write_report_files
from refcolor.images import from_model_range
from refcolor.inference import flats as fl
from refcolor.inference.full_resolution import line_free_colours
from refcolor.models.guiding_painter import GuidingPainter
from refcolor.ops import line_regions

REPORT_NAME = "psnr_vs_hints"
MIN_REGION_AREA = 0.005  # fraction of the image: 82 px at 128 x 128
MAX_PSNR = 100.0  # dB; a per-image MSE below 1e-10 (identical images) counts as this, keeping means finite
# The modes measured beside the soft output of the model's regions ("soft"), in the report's order:
# "snapped": the model's output with its regions snapped to the line regions (refcolor guide's
# default; hints numbered on the snapped regions, the unhinted areas painted from the model's own:
# refcolor.inference.flats.paint_channels); "flat (median)" / "flat (mean)": flats over the
# snapped output (hinted line regions take the hint colour, the others the median / mean of the
# output over their paper pixels);
# "flat unsnapped (median)": flats over the soft output of the model's own regions (a line region
# takes a hint's colour where hints cover most of its paper).
FLAT_MODES = ("snapped", "flat (median)", "flat (mean)", "flat unsnapped (median)")
CEILINGS = ("median", "mean")  # every line region filled with the target's own median / mean


@dataclass
class HintCurve:
    """PSNR (dB) against the number of simulated hints, over `num_images` images.

    per_image: (num_images, len(hints)) float64; psnr_mean / psnr_std (population std) over images;
    coverage: mean fraction of pixels under a hint; hint_map_psnr: mean PSNR of the all-regions
    hint map."""

    hints: list[int]
    psnr_mean: list[float]
    psnr_std: list[float]
    coverage: list[float]
    hint_map_psnr: float
    per_image: Tensor
    paths: list[str]
    image_size: int
    data: str = ""  # what was evaluated: the folder (or dataset) the images came from
    # Regions proposed per image, (num_images,) int64: any pixel / at least MIN_REGION_AREA.
    regions: Tensor | None = None
    large_regions: Tensor | None = None
    # Flats and snapped regions (evaluate_guide_psnr(flats=True)): per mode (FLAT_MODES) the
    # per-image PSNR (num_images, len(hints)); the ceilings' per-image PSNR (num_images,) (every
    # line region filled with the target's own mean / median); per region kind ("model",
    # "snapped") the border pixels on or within 1 px of a line and all border pixels, summed over
    # images; the line regions' options and count per image.
    modes: dict[str, Tensor] = field(default_factory=dict)
    ceilings: dict[str, Tensor] = field(default_factory=dict)
    borders: dict[str, tuple[int, int]] = field(default_factory=dict)
    line_options: dict[str, float] = field(default_factory=dict)
    line_regions: Tensor | None = None

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def step_changes(self) -> list[tuple[float, float] | None]:
        """For each count, the PSNR change from the previous count, paired over images: (mean,
        half-width of its 95% confidence interval, normal approximation 1.96 * std / sqrt(n));
        None for the first count. Whether a step that rises or falls by less than its half-width
        says anything about the model or only about this sample of images."""
        changes: list[tuple[float, float] | None] = [None]
        n = self.per_image.shape[0]
        for i in range(1, len(self.hints)):
            diff = self.per_image[:, i] - self.per_image[:, i - 1]
            spread = float(diff.std(correction=1)) if n > 1 else math.nan
            changes.append((float(diff.mean()), 1.96 * spread / math.sqrt(n)))
        return changes

    def mode_means(self) -> dict[str, list[float]]:
        """Mean PSNR per hint count of every mode: "soft" (the model's regions, its output as it
        is) first, then FLAT_MODES that were measured."""
        means = {"soft": self.psnr_mean}
        means.update({name: per_image.mean(dim=0).tolist() for name, per_image in self.modes.items()})
        return means

    def border_share(self, kind: str) -> float:
        """The share of `kind`'s border pixels ("model" or "snapped") on or within 1 px of a line."""
        on, total = self.borders[kind]
        return on / total if total else math.nan

    def rows(self) -> list[dict]:
        return [
            {"num_hints": n, "psnr_mean": m, "psnr_std": s, "coverage": c, "change": d}
            for n, m, s, c, d in zip(
                self.hints, self.psnr_mean, self.psnr_std, self.coverage, self.step_changes(), strict=True
            )
        ]


def _psnr(output: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB) of (..., C, H, W) images in [0, 1], float64."""
    mse = ((output.double() - target.double()) ** 2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(1 / mse.clamp_min(10 ** (-MAX_PSNR / 10)))


def regions_to_channels(segments: Tensor, counts: list[int]) -> Tensor:
    """(len(counts), B) int64: for each n of `counts`, how many region channels of each sketch's
    one-hot `segments` (B, Nc, H, W) hold its first n non-empty regions, what GuidingPainter's
    num_hints must be for n hints (the numbering of refcolor.inference.guided.GuidedColorizer).
    All Nc when the sketch has fewer regions; 0 for n = 0."""
    regions_so_far = (segments.flatten(2).amax(dim=2) > 0).cumsum(dim=1)  # (B, Nc), once for all counts
    nc = segments.shape[1]
    rows = []
    for n in counts:
        reached = regions_so_far >= n  # channel i holds the n-th region or a later one
        first = reached.to(torch.int64).argmax(dim=1)  # the first channel that does (0 when none does)
        channels = torch.where(reached.any(dim=1), first + 1, torch.full_like(first, nc))
        rows.append(channels if n > 0 else torch.zeros_like(channels))
    return torch.stack(rows)


def hinted_outputs(
    model: GuidingPainter, sketch: Tensor, target: Tensor, counts: list[int], segments: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Outputs for several hint counts at once: (len(counts), B, 3, H, W) in [-1, 1] and the hint
    masks (len(counts), B, 1, H, W). In eval mode the same as model(sketch, target, tau=None,
    num_hints=regions_to_channels(segments, [n])[0]).output for each n (n regions hinted, as a user
    numbers them), with the counts batched; pass `segments` (the argmax one-hot of
    model.segmentation.segments(sketch)) to reuse one segmentation pass for several calls."""
    output, hints = _hinted(model, sketch, target, counts, segments)
    return output, hints[:, :, 3:]


def _hinted(
    model: GuidingPainter, sketch: Tensor, target: Tensor, counts: list[int], segments: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """hinted_outputs with the whole hint maps U = [C, M]: (len(counts), B, 4, H, W)."""
    if segments is None:
        segments = model.segmentation.segments(sketch)
    k, b = len(counts), sketch.shape[0]
    num_hints = regions_to_channels(segments, counts).flatten().to(sketch.device)
    segments_k = segments.repeat(k, 1, 1, 1)
    sketch_k = sketch.repeat(k, 1, 1, 1)
    hints = model.hint_generator(segments_k, target.repeat(k, 1, 1, 1).to(segments.dtype), num_hints=num_hints)
    output = model.paint(sketch_k, hints, segments_k)
    return output.reshape(k, b, *output.shape[1:]), hints.reshape(k, b, *hints.shape[1:])


def evaluate_guide_psnr(
    model: GuidingPainter,
    data: str | os.PathLike | torch.utils.data.Dataset,
    *,
    max_images: int | None = None,
    batch_size: int = 8,
    hint_counts: list[int] | None = None,
    samples_per_pass: int = 32,
    device: str | torch.device | None = None,
    flats: bool = True,
    threshold: float = fl.THRESHOLD,
    gap: int = fl.GAP,
    min_area: int = fl.MIN_AREA,
) -> HintCurve:
    """The PSNR-vs-hints curve of `model` on `data` (a folder, or a dataset of {"image": (3, S, S) in
    [0, 1], "path"} items at a size the model accepts). hint_counts default: 0..Nc. batch_size images
    share a segmentation pass; up to samples_per_pass (image, count) pairs share a colorization pass.
    flats: also measure FLAT_MODES, the CEILINGS and how well the regions follow the lines, over
    line_regions(sketch, threshold, gap, min_area) (one more colorization pass per count)."""
    if not isinstance(model, GuidingPainter):
        raise TypeError(f"model: expected a GuidingPainter, got {type(model).__name__}")
    nc = model.num_segments
    counts = list(range(nc + 1)) if hint_counts is None else [int(n) for n in hint_counts]
    if not counts or any(not 0 <= n <= nc for n in counts):
        raise ValueError(f"hint_counts: expected a non-empty list of counts in 0..{nc}, got {hint_counts!r}")
    for name, value in (("batch_size", batch_size), ("samples_per_pass", samples_per_pass)):
        if value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images: expected an integer >= 1, got {max_images}")
    dataset = data if isinstance(data, torch.utils.data.Dataset) else ImageFolder(data, size=model.config.image_size)
    if not isinstance(dataset, Sized):
        raise TypeError(f"data: expected a dataset with a length (map-style), got {type(dataset).__name__}")
    total = len(dataset) if max_images is None else min(max_images, len(dataset))
    if total == 0:
        raise ValueError("data: no images to evaluate")
    device = torch.device(device) if device is not None else next(model.parameters()).device

    was_training = model.training
    model.eval()
    psnrs, coverages, hint_map, paths, regions, large_regions = [], [], [], [], [], []
    options: dict[str, Any] = {"threshold": threshold, "gap": gap, "min_area": min_area}
    modes: dict[str, list[Tensor]] = {name: [] for name in FLAT_MODES}
    ceilings: dict[str, list[Tensor]] = {name: [] for name in CEILINGS}
    borders = {"model": [0, 0], "snapped": [0, 0]}
    region_counts: list[Tensor] = []
    try:
        with torch.no_grad():
            for start in range(0, total, batch_size):
                items = [dataset[i] for i in range(start, min(start + batch_size, total))]
                image = torch.stack([item["image"] for item in items]).to(device)
                paths += [str(item.get("path", start + i)) for i, item in enumerate(items)]
                target = image * 2 - 1
                sketch = prepare_sketch(image, extract="always") * 2 - 1  # as inference prepares it
                segments = model.segmentation.segments(sketch)  # argmax one-hot in eval mode
                areas = segments.float().mean(dim=(-2, -1))  # (b, Nc): each channel's share of the image
                regions.append((areas > 0).sum(dim=1).cpu())
                large_regions.append((areas >= MIN_REGION_AREA).sum(dim=1).cpu())
                step = max(1, samples_per_pass // len(items))
                batch_psnr, batch_cover = [], []
                measure = _FlatMeasure(model, sketch, image, segments, options) if flats else None
                for i in range(0, len(counts), step):
                    output, hints = _hinted(model, sketch, target, counts[i : i + step], segments)
                    batch_psnr.append(_psnr(from_model_range(output), image).cpu())
                    batch_cover.append(hints[:, :, 3:].double().mean(dim=(-3, -2, -1)).cpu())
                    if measure is not None:
                        measure.add(counts[i : i + step], output, hints)
                psnrs.append(torch.cat(batch_psnr).T)  # (b, len(counts))
                coverages.append(torch.cat(batch_cover).T)
                if measure is not None:
                    measure.collect(modes, ceilings, borders, region_counts)
                full = model.hint_generator(segments, target.to(segments.dtype), num_hints=nc)
                hint_map.append(_psnr(from_model_range(full[:, :3]), image).cpu())
    finally:
        model.train(was_training)

    per_image = torch.cat(psnrs)
    hint_map_psnr = torch.cat(hint_map)
    return HintCurve(
        hints=counts,
        psnr_mean=per_image.mean(dim=0).tolist(),
        psnr_std=per_image.std(dim=0, correction=0).tolist(),
        coverage=torch.cat(coverages).mean(dim=0).tolist(),
        hint_map_psnr=float(hint_map_psnr.mean()),
        per_image=per_image,
        paths=paths,
        image_size=int(image.shape[-1]),
        data=describe_data(data, dataset),
        regions=torch.cat(regions),
        large_regions=torch.cat(large_regions),
        modes={name: torch.cat(values) for name, values in modes.items() if values},
        ceilings={name: torch.cat(values) for name, values in ceilings.items() if values},
        borders={kind: (on, total) for kind, (on, total) in borders.items()} if flats else {},
        line_options=dict(options) if flats else {},
        line_regions=torch.cat(region_counts) if region_counts else None,
    )


class _FlatMeasure:
    """The flat modes of one batch of evaluate_guide_psnr: the line regions of its sketches, the
    snapped segments, the ceilings and border shares once; then add() per chunk of hint counts."""

    def __init__(self, model: GuidingPainter, sketch: Tensor, image: Tensor, segments: Tensor, options: dict):
        self.model, self.sketch, self.image, self.options = model, sketch, image, options
        self.paper = (sketch + 1) / 2  # the sketch in [0, 1]: white paper, dark lines
        self.labels = line_regions(self.paper.float(), **options)
        channel_map = segments.argmax(dim=1)
        snapped_map = fl.snap_regions(channel_map.cpu(), self.labels.cpu()).to(segments.device)
        self.channel_map, self.snapped_map = channel_map, snapped_map
        self.snapped = F.one_hot(snapped_map, model.num_segments).permute(0, 3, 1, 2).to(segments.dtype)
        threshold = options["threshold"]
        self.borders = {
            "model": fl.borders_on_lines(channel_map, self.paper, threshold),
            "snapped": fl.borders_on_lines(snapped_map, self.paper, threshold),
        }
        self.ceilings = {method: _psnr(self._flatten(image, None, method), image).cpu() for method in CEILINGS}
        self.psnrs: dict[str, list[Tensor]] = {name: [] for name in FLAT_MODES}

    def _flatten(self, colours: Tensor, hints: Tensor | None, method: str) -> Tensor:
        """Flats (in [0, 1]) of colours (N, 3, H, W) in [0, 1] over this batch's line regions
        (repeated for N = k * B), with hints U (N, 4, H, W) in [-1, 1] when given."""
        k = colours.shape[0] // self.paper.shape[0]
        paper = self.paper.repeat(k, 1, 1, 1)
        labels = self.labels.repeat(k, 1, 1)
        given: dict[str, Any] = {}
        if hints is not None:
            given = {"hints": from_model_range(hints[:, :3]), "hint_mask": hints[:, 3:] > 0}
        result = fl.flatten(colours, paper, labels=labels, method=method, **given, **self.options)
        return result.image

    def add(self, counts: list[int], output: Tensor, hints: Tensor) -> None:
        """output (k, B, 3, H, W) and hints (k, B, 4, H, W) of the model's regions for `counts`."""
        k = len(counts)
        target = self.image.repeat(k, 1, 1, 1)
        flat_input = output.flatten(0, 1)
        paper = self.paper.repeat(k, 1, 1, 1)
        unsnapped = line_free_colours(from_model_range(flat_input.float()), paper, (paper.shape[-2], paper.shape[-1]))
        self.psnrs["flat unsnapped (median)"].append(
            _psnr(self._flatten(unsnapped, hints.flatten(0, 1), "median"), target).reshape(k, -1).cpu()
        )
        # Hints numbered on the snapped regions; the model paints from them where hinted and from its
        # own regions elsewhere (flats.paint_channels, as GuidedColorizer does).
        num_hints = regions_to_channels(self.snapped, counts).flatten().to(self.sketch.device)
        b = self.sketch.shape[0]
        channels = fl.paint_channels(self.channel_map.repeat(k, 1, 1), self.snapped_map.repeat(k, 1, 1), num_hints)
        segments = F.one_hot(channels, self.model.num_segments).permute(0, 3, 1, 2).to(self.snapped.dtype)
        hints = self.model.hint_generator(segments, self.image.repeat(k, 1, 1, 1) * 2 - 1, num_hints=num_hints)
        painted = self.model.paint(self.sketch.repeat(k, 1, 1, 1), hints, segments)
        snapped_output = painted.reshape(k, b, *painted.shape[1:])
        snapped_hints = hints.reshape(k, b, *hints.shape[1:])
        self.psnrs["snapped"].append(_psnr(from_model_range(snapped_output), self.image).cpu())
        free = line_free_colours(
            from_model_range(snapped_output.flatten(0, 1).float()), paper, (paper.shape[-2], paper.shape[-1])
        )
        for method, name in (("median", "flat (median)"), ("mean", "flat (mean)")):
            flat = self._flatten(free, snapped_hints.flatten(0, 1), method)
            self.psnrs[name].append(_psnr(flat, target).reshape(k, -1).cpu())

    def collect(self, modes, ceilings, borders, region_counts) -> None:
        for name, values in self.psnrs.items():
            modes[name].append(torch.cat(values).T)  # (b, len(counts))
        for name, per_image in self.ceilings.items():
            ceilings[name].append(per_image)
        for kind, (on, total) in self.borders.items():
            borders[kind][0] += int(on.sum())
            borders[kind][1] += int(total.sum())
        region_counts.append((self.labels.flatten(1).amax(dim=1) + 1).cpu())


def describe_data(data, dataset) -> str:
    """The evaluated data in words, for the report; says so when it is the bundled sample set,
    which is also the default training data."""
    root = getattr(dataset, "root", None) if isinstance(data, torch.utils.data.Dataset) else data
    if root is None:
        return type(dataset).__name__
    text = str(Path(root).resolve())
    try:
        if Path(root).resolve() == sample_images_dir().resolve():
            text += " (the bundled sample set: refcolor train's default training data, not held out)"
    except FileNotFoundError:
        pass
    return text


# --------------------------------------------------------------------------- tables


def _change_text(change: tuple[float, float] | None) -> str:
    return "" if change is None else f"{change[0]:+.3f} +- {change[1]:.3f}"


def markdown_table(curve: HintCurve) -> str:
    lines = [
        "| hints | PSNR mean (dB) | PSNR std (dB) | change from the previous row (dB, 95% CI) | hinted pixels |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['num_hints']} | {r['psnr_mean']:.2f} | {r['psnr_std']:.2f} | {_change_text(r['change'])} "
        f"| {r['coverage']:.1%} |"
        for r in curve.rows()
    ]
    return "\n".join(lines)


def steps_line(curve: HintCurve) -> str:
    """Which steps of the curve fall, and which changes are within their confidence interval."""
    changes = [(n, c) for n, c in zip(curve.hints, curve.step_changes(), strict=True) if c is not None]
    if not changes:
        return ""
    falls = [f"{n} ({c[0]:+.4f} dB)" for n, c in changes if c[0] <= 0]
    unclear = [str(n) for n, c in changes if abs(c[0]) <= c[1]]
    text = f"PSNR falls or stays at: {', '.join(falls)}." if falls else "PSNR rises at every step."
    if unclear:
        text += (
            f" Changes smaller than their 95% confidence interval over these images (paired, normal "
            f"approximation): at {', '.join(unclear)} hints."
        )
    return f"\n{text}\n"


def regions_line(curve: HintCurve) -> str:
    """The regions proposed per sketch in words (empty when not measured)."""
    if curve.regions is None or curve.large_regions is None:
        return ""
    any_px, large = curve.regions.double(), curve.large_regions.double()
    return (
        f"\nRegions proposed per sketch (of {curve.num_images}): median {any_px.median():.0f} "
        f"(mean {any_px.mean():.1f}, min {any_px.min():.0f}) holding any pixel, as `refcolor guide` numbers them; "
        f"median {large.median():.0f} (mean {large.mean():.1f}, min {large.min():.0f}) covering at least "
        f"{MIN_REGION_AREA:.1%} of the image.\n"
    )


def _slug(mode: str) -> str:
    """A mode's CSV column: "flat unsnapped (median)" -> "psnr_flat_unsnapped_median"."""
    return "psnr_" + "_".join(mode.replace("(", " ").replace(")", " ").split())


def write_csv(curve: HintCurve, path: str | os.PathLike) -> None:
    """One row per hint count: the soft curve's columns, then one PSNR column per flat mode, and
    the ceilings as rows whose num_hints is "ceiling (median)" / "ceiling (mean)"."""
    modes = {name: values for name, values in curve.mode_means().items() if name != "soft"}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["num_hints", "psnr_mean", "psnr_std", "coverage", "change_mean", "change_ci95"] + [_slug(m) for m in modes]
        )
        for i, r in enumerate(curve.rows()):
            change = r["change"]
            writer.writerow(
                [r["num_hints"], f"{r['psnr_mean']:.4f}", f"{r['psnr_std']:.4f}", f"{r['coverage']:.4f}"]
                + (["", ""] if change is None else [f"{change[0]:.4f}", f"{change[1]:.4f}"])
                + [f"{values[i]:.4f}" for values in modes.values()]
            )
        for name, values in curve.ceilings.items():
            writer.writerow(
                [f"ceiling ({name})", f"{float(values.mean()):.4f}", f"{float(values.std(correction=0)):.4f}"]
            )


def flats_table(curve: HintCurve) -> str:
    """Soft against snapped and flat output at every hint count, the ceilings below (empty when
    the flats were not measured)."""
    if not curve.modes:
        return ""
    means = curve.mode_means()
    names = list(means)
    lines = [
        "| hints | " + " | ".join(f"{name} (dB)" for name in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for i, n in enumerate(curve.hints):
        best = max(means[name][i] for name in names)
        cells = [f"**{means[name][i]:.2f}**" if means[name][i] == best else f"{means[name][i]:.2f}" for name in names]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for name, values in curve.ceilings.items():
        lines.append(
            f"| ceiling: every line region its target {name} | {float(values.mean()):.2f} |" + " |" * (len(names) - 1)
        )
    return "\n".join(lines)


def flats_text(curve: HintCurve) -> str:
    """The flats section of the report (empty when not measured)."""
    if not curve.modes:
        return ""
    options = ", ".join(f"{k} {v}" for k, v in curve.line_options.items())
    regions = curve.line_regions.double() if curve.line_regions is not None else torch.zeros(1)
    return (
        f"\n## Soft against snapped and flat output\n\n"
        f"Line regions: `refcolor.ops.line_regions` of the sketch ({options}): median {regions.median():.0f} "
        f"per sketch (min {regions.min():.0f}, max {regions.max():.0f}). "
        f"*soft*: the model's output on its own regions (the table above). *snapped*: the model's output on "
        f"its regions snapped to the line regions (each line region joins the region covering most of it; "
        f"`refcolor guide`'s regions), hints numbered on them. *flat (median / mean)*: flats over the snapped "
        f"output: hinted line regions take the hint colour, the others the median / mean of the output over "
        f"their paper pixels, the sketch multiplied on top. *flat unsnapped (median)*: the same over the soft "
        f"output of the model's own regions. Ceilings: every line region filled with the target's own median / "
        f"mean over it, the sketch on top: the best any flat output over these regions scores. The best "
        f"mode of each row is in bold.\n\n"
        f"{flats_table(curve)}\n\n"
        f"Region borders on or within 1 px of a sketch line: {curve.border_share('model'):.1%} of the model's "
        f"own, {curve.border_share('snapped'):.1%} of the snapped regions' (over all images' border pixels).\n"
    )


def write_markdown(curve: HintCurve, path: str | os.PathLike, title: str) -> None:
    text = (
        f"# {title}\n\n"
        f"Data: {curve.data or 'not recorded'}.\n\n"
        f"{curve.num_images} images at {curve.image_size}x{curve.image_size}; sketches: XDoG (default parameters); "
        f"hints: mean target colour of the first n regions, numbered as `refcolor guide` shows them "
        f"(the region channels that hold a pixel, in priority order). "
        f"PSNR on [0, 1] images, mean and std over images.\n\n"
        f"{markdown_table(curve)}\n"
        f"{steps_line(curve)}\n"
        f"For context: the all-regions hint map itself (each region filled with its mean colour) "
        f"scores {curve.hint_map_psnr:.2f} dB.\n"
        f"{regions_line(curve)}"
        f"{flats_text(curve)}"
    )
    Path(path).write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- the chart


def plot_curve(curve: HintCurve, path: str | os.PathLike, title: str) -> None:
    """PSNR mean against hints (markers, a +-std band) with the all-regions hint map's PSNR as a
    dashed reference line, as a PNG at `path`. Needs matplotlib (ImportError otherwise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    mean, std = torch.tensor(curve.psnr_mean), torch.tensor(curve.psnr_std)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    ax.fill_between(curve.hints, (mean - std).tolist(), (mean + std).tolist(), color="tab:blue", alpha=0.2, lw=0)
    ax.plot(
        curve.hints,
        curve.psnr_mean,
        "o-",
        color="tab:blue",
        ms=4,
        label=f"colorized: mean +- std over {curve.num_images} images",
    )
    ax.axhline(
        curve.hint_map_psnr, color="tab:orange", ls="--", label=f"hint map, all regions ({curve.hint_map_psnr:.2f} dB)"
    )
    styles = {"snapped": "tab:green", "flat (median)": "tab:red", "flat (mean)": "tab:purple"}
    styles["flat unsnapped (median)"] = "tab:gray"
    for name, values in curve.mode_means().items():
        if name != "soft":
            ax.plot(curve.hints, values, "s-" if name == "snapped" else ".--", color=styles.get(name), ms=3, label=name)
    for (name, per_image), style in zip(curve.ceilings.items(), (":", "-."), strict=False):
        value = float(per_image.mean())
        ax.axhline(value, color="black", ls=style, lw=1, label=f"ceiling, line regions' target {name} ({value:.2f} dB)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of hints (regions coloured)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if curve.modes else "upper left", fontsize=8 if curve.modes else 9)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(curve: HintCurve, out_dir: str | os.PathLike, *, title: str | None = None) -> dict[str, Path]:
    """psnr_vs_hints.csv and .md under out_dir (created), and psnr_vs_hints.png when matplotlib is
    installed; -> {"csv": path, "md": path[, "png": path]}."""
    title = title or "GuidingPainter: PSNR vs number of hints"
    return write_report_files(curve, out_dir, REPORT_NAME, title, write_csv, write_markdown, plot_curve)


__all__ = [
    "CEILINGS",
    "FLAT_MODES",
    "MAX_PSNR",
    "REPORT_NAME",
    "HintCurve",
    "evaluate_guide_psnr",
    "flats_table",
    "flats_text",
    "hinted_outputs",
    "markdown_table",
    "plot_curve",
    "regions_to_channels",
    "steps_line",
    "write_csv",
    "write_markdown",
    "write_report",
]

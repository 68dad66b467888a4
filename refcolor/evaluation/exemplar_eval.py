"""The exemplar colorizer's evaluation on held-out colour images (ImageFolder at the model's
image_size: sorted, centre crops), mirroring refcolor.evaluation.scft_eval.

Augmented self (PSNR, SSIM): for image i, a torch.Generator seeded with seed * 1_000_003 + i draws
what training draws (AugmentedSelfReference's colour jitter, then its TPS warp): the target Y is the
jittered image, the exemplar is Y warped. warp="strong" composes the TPS with WARPS["strong"]'s
flip, rotation, scale and shift (as `refcolor evaluate --model scft --warp strong`), so pasting the
exemplar by position scores low and only a method that finds where each colour went scores high.
Every method gets Y's luminance L and keeps it, so the figures measure the colours alone; PSNR /
SSIM (scft_eval.psnr, .ssim) against Y of:
  - model: the whole network (transfer sub-net, then colorization sub-net, inference hint mask);
  - transfer_only: Lab(L, T_ab), the transfer sub-net without the colorization sub-net;
  - correspondence_only: L with W_ab, the exemplar's a*b* warped by frozen-feature correspondence
    (refcolor.models.exemplar_correspondence, the model's own encoder, its config's stride and
    temperature), no learned weights: what the correspondence input of the colorization sub-net
    gives by itself, and a training-free method a user could run instead;
  - reinhard: Reinhard et al.'s (2001) global colour transfer, per-channel Lab mean / std, applied
    to a*b* (L kept as by every method here): a gray input's a*b* have no variance, so this is L
    with the exemplar's mean a*b* (the transfer of the means);
  - luminance_histogram: the exemplar's colours matched by luminance histogram: every pixel takes
    the mean a*b* of the exemplar's pixels at its own luminance quantile (LUMINANCE_BINS equal-count
    bins of the exemplar's sorted luminance; the pixel's quantile is its rank in the input), a
    luminance-keyed colour lookup in the spirit of Welsh et al. 2002;
  - gray: L alone (a* = b* = 0);
  - exemplar_copy: L with the exemplar's own a*b* pixel by pixel. Here the exemplar is the target's
    warped copy, so this scores how far the warp moved the colours: a bound the protocol hands to
    any method that aligns the exemplar with the input, which an AdaIN transfer (the exemplar's
    feature statistics, not its layout) by design does not. With another image as exemplar, as a
    user would give, pasting its colours by position means nothing; it is listed so that the
    protocol's advantage for alignment is in the table, not a method to pick;
  - model_flat: the model's output as flats (refcolor.inference.flats): every area enclosed by the
    lines of the input's XDoG outline takes the median of the output over it, the outline on top.
    Clip art and photos are no line drawings, so this measures what --flat costs on them.
Cross exemplar (palette, colourfulness): image i's L coloured with image i + 1 (cyclically, plain,
not jittered) as exemplar E. Palette: scft_eval.palette_intersection, the intersection of the
a*b* histograms of the coloured pixels (chroma >= 10) of the output and of E (1: same palette).
Colourfulness: Hasler & Suesstrunk (2003), M = sigma_rgyb + 0.3 mu_rgyb on 0..255 RGB (0 for gray;
"exemplar" is E's own). Needs at least two images.
Speed: the model's forward (no autograd) on one S x S image for S = 256 and 512, median of
`timing_runs` calls after one warm-up, in ms, on the evaluation device.

write_report -> exemplar_eval.csv and .md, and exemplar_eval.png with matplotlib (refcolor[plot]).
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from refcolor.data.augmented_self_reference import WARPS, AugmentedSelfReference
from refcolor.data.image_folder import ImageFolder
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.evaluation.guide_psnr import describe_data
from refcolor.evaluation.report_files import write_report_files
from refcolor.evaluation.scft_eval import palette_intersection, psnr, ssim
from refcolor.inference import flats
from refcolor.lab import gray_rgb, normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models.adain import channel_stats
from refcolor.models.exemplar_correspondence import warp_exemplar_colours

REPORT_NAME = "exemplar_eval"
METHODS = (
    "model",
    "transfer_only",
    "correspondence_only",
    "reinhard",
    "luminance_histogram",
    "gray",
    "exemplar_copy",
    "model_flat",
)
LUMINANCE_BINS = 64
TIMING_SIZES = (256, 512)
_SEED_STRIDE = 1_000_003


def reinhard_ab(luminance: Tensor, image_ab: Tensor, exemplar: Tensor) -> Tensor:
    """Reinhard et al.'s mean / std transfer of the exemplar's normalised a*b* onto image_ab (B, 2, H, W)."""
    _, exemplar_ab = rgb_to_normalized_lab(exemplar)
    source_mean, source_std = channel_stats(image_ab)
    target_mean, target_std = channel_stats(exemplar_ab)
    return (image_ab - source_mean) / source_std * target_std + target_mean


def luminance_histogram_ab(luminance: Tensor, exemplar: Tensor, bins: int = LUMINANCE_BINS) -> Tensor:
    """(B, 2, H, W) normalised a*b*: the luminance_histogram baseline of the module docstring for
    L_n `luminance` (B, 1, H, W) and sRGB `exemplar` (B, 3, H', W')."""
    exemplar_luminance, exemplar_ab = rgb_to_normalized_lab(exemplar)
    out = []
    for lum, ex_lum, ex_ab in zip(luminance, exemplar_luminance, exemplar_ab, strict=True):
        order = ex_lum.flatten().argsort()
        chunks = ex_ab.flatten(1)[:, order].tensor_split(bins, dim=1)
        means = torch.stack([c.mean(dim=1) if c.shape[1] else c.new_zeros(2) for c in chunks], dim=1)
        flat = lum.flatten()
        rank = torch.empty_like(flat).scatter_(0, flat.argsort(), torch.arange(flat.numel(), dtype=flat.dtype))
        index = (rank * bins / flat.numel()).long().clamp_max(bins - 1)
        out.append(means[:, index].view(2, *lum.shape[-2:]))
    return torch.stack(out)


def colourfulness(images: Tensor) -> Tensor:
    """Hasler & Suesstrunk's colourfulness (B,) of (B, 3, H, W) RGB in [0, 1], on the 0..255 scale."""
    rgb = images.double() * 255
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    std = (rg.flatten(1).var(dim=1, correction=0) + yb.flatten(1).var(dim=1, correction=0)).sqrt()
    mean = (rg.flatten(1).mean(dim=1) ** 2 + yb.flatten(1).mean(dim=1) ** 2).sqrt()
    return std + 0.3 * mean


def augmented_self_pair(image: Tensor, index: int, seed: int = 0, warp: str = "mild") -> tuple[Tensor, Tensor]:
    """(target Y, exemplar) (1, 3, S, S) each for image `index` (3, S, S) in [0, 1] (module
    docstring); warp: "mild" (the training TPS) or "strong" (WARPS["strong"] on top)."""
    generator = torch.Generator().manual_seed(seed * _SEED_STRIDE + index)
    augment = AugmentedSelfReference.with_warp(warp)
    target = augment.appearance(image.unsqueeze(0), augment.sample_jitter(1, generator=generator))
    exemplar, _ = augment.distort(target, generator)
    return target, exemplar


def colourings(model, luminance: Tensor, exemplar: Tensor) -> list[Tensor]:
    """The METHODS' outputs (B, 3, S, S) in [0, 1] for L_n and exemplar."""
    out = model(luminance, exemplar)
    zero_ab = luminance.new_zeros(luminance.shape[0], 2, *luminance.shape[-2:])
    config = model.config
    warped = out.warped_ab
    if warped is None:  # a model without the correspondence input: the same warp, its encoder
        warped, _ = warp_exemplar_colours(
            model.transfer.encoder,
            luminance,
            exemplar,
            stride=config.correspondence_stride,
            temperature=config.correspondence_temperature,
            size=config.image_size,
        )
    soft = normalized_lab_to_rgb(luminance, out.ab.float())
    # model_flat: the output as flats over the line regions of the input's XDoG outline (what
    # ExemplarColorizer(flat=True) does with an input that is no line drawing).
    sketch = prepare_sketch(gray_rgb(luminance), extract="always")
    return [
        soft,
        normalized_lab_to_rgb(luminance, out.transfer.t_ab.float()),
        normalized_lab_to_rgb(luminance, warped.float()),
        normalized_lab_to_rgb(luminance, reinhard_ab(luminance, zero_ab, exemplar)),
        normalized_lab_to_rgb(luminance, luminance_histogram_ab(luminance, exemplar)),
        gray_rgb(luminance),
        normalized_lab_to_rgb(luminance, rgb_to_normalized_lab(exemplar)[1]),
        flats.flatten(soft, sketch).image,
    ]


@dataclass
class ExemplarEvaluation:
    """psnr / ssim: (num_images, len(METHODS)); palette / colourfulness: (num_images, len(METHODS))
    or None (fewer than two images); exemplar_colourfulness: (num_images,); timing_ms: {S: ms}."""

    paths: list[str]
    image_size: int
    seed: int
    psnr: Tensor
    ssim: Tensor
    palette: Tensor | None = None
    colourfulness: Tensor | None = None
    exemplar_colourfulness: Tensor | None = None
    timing_ms: dict[int, float] = field(default_factory=dict)
    data: str = ""
    device: str = "cpu"
    warp: str = "mild"

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def rows(self) -> list[dict]:
        rows = []
        for j, name in enumerate(METHODS):
            row = {
                "method": name,
                "psnr_mean": float(self.psnr[:, j].mean()),
                "psnr_std": float(self.psnr[:, j].std(correction=0)),
                "ssim_mean": float(self.ssim[:, j].mean()),
                "ssim_std": float(self.ssim[:, j].std(correction=0)),
                "palette_mean": math.nan if self.palette is None else float(self.palette[:, j].mean()),
                "colourfulness_mean": math.nan
                if self.colourfulness is None
                else float(self.colourfulness[:, j].mean()),
            }
            rows.append(row)
        if self.exemplar_colourfulness is not None:
            rows.append(
                {"method": "exemplar", **dict.fromkeys(("psnr_mean", "psnr_std", "ssim_mean", "ssim_std"), math.nan)}
                | {"palette_mean": 1.0, "colourfulness_mean": float(self.exemplar_colourfulness.mean())}
            )
        return rows


@torch.no_grad()
def time_model(model, sizes=TIMING_SIZES, runs: int = 3, device=None) -> dict[int, float]:
    """Median ms of model(L, exemplar) on one S x S image per size (one warm-up call first)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    timings = {}
    for size in sizes:
        generator = torch.Generator().manual_seed(size)
        luminance = (torch.rand(1, 1, size, size, generator=generator) * 2 - 1).to(device)
        exemplar = torch.rand(1, 3, size, size, generator=generator).to(device)
        model(luminance, exemplar)
        measured = []
        for _ in range(runs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(luminance, exemplar)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            measured.append((time.perf_counter() - start) * 1000)
        timings[size] = sorted(measured)[len(measured) // 2]
    return timings


def evaluate_exemplar(
    model,
    data: str | os.PathLike | torch.utils.data.Dataset,
    *,
    max_images: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
    timing_sizes: tuple[int, ...] | None = None,
    timing_runs: int = 3,
    warp: str = "mild",
) -> ExemplarEvaluation:
    """The protocol of the module docstring with a refcolor.models.ExemplarColorizer on `data` (a
    folder, or a dataset of {"image": (3, S, S) in [0, 1], "path"} items). timing_sizes: None for
    TIMING_SIZES, () for no timing. warp: "mild" or "strong", how the augmented-self exemplar is
    made (module docstring)."""
    if warp not in WARPS:
        raise ValueError(f"warp: expected one of {tuple(WARPS)}, got {warp!r}")
    timing_sizes = TIMING_SIZES if timing_sizes is None else tuple(timing_sizes)
    for name, value in (("batch_size", batch_size), ("timing_runs", timing_runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images: expected an integer >= 1, got {max_images!r}")
    image_size = model.config.image_size
    dataset = data if isinstance(data, torch.utils.data.Dataset) else ImageFolder(data, size=image_size)
    total = len(dataset) if max_images is None else min(max_images, len(dataset))  # type: ignore[arg-type]
    if total == 0:
        raise ValueError("data: no images to evaluate")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    psnrs, ssims, palettes, colours, exemplar_colours, paths = [], [], [], [], [], []
    try:
        with torch.no_grad():
            for start in range(0, total, batch_size):
                indices = list(range(start, min(start + batch_size, total)))
                items = [dataset[i] for i in indices]
                paths += [str(item.get("path", i)) for i, item in zip(indices, items, strict=True)]
                pairs = [
                    augmented_self_pair(item["image"], i, seed, warp) for i, item in zip(indices, items, strict=True)
                ]
                target = torch.cat([p[0] for p in pairs]).to(device)
                exemplar = torch.cat([p[1] for p in pairs]).to(device)
                luminance, _ = rgb_to_normalized_lab(target)
                outputs = colourings(model, luminance, exemplar)
                psnrs.append(torch.stack([psnr(o, target) for o in outputs], dim=1).cpu())
                ssims.append(torch.stack([ssim(o, target) for o in outputs], dim=1).cpu())
                if total >= 2:
                    other = torch.stack([dataset[(i + 1) % total]["image"] for i in indices]).to(device)
                    plain, _ = rgb_to_normalized_lab(torch.stack([item["image"] for item in items]).to(device))
                    crossed = colourings(model, plain, other)
                    palettes.append(torch.stack([palette_intersection(o, other) for o in crossed], dim=1).cpu())
                    colours.append(torch.stack([colourfulness(o) for o in crossed], dim=1).cpu())
                    exemplar_colours.append(colourfulness(other).cpu())
        timing = time_model(model, timing_sizes, timing_runs, device) if timing_sizes else {}
    finally:
        model.train(was_training)
    return ExemplarEvaluation(
        paths=paths,
        image_size=image_size,
        seed=seed,
        psnr=torch.cat(psnrs),
        ssim=torch.cat(ssims),
        palette=torch.cat(palettes) if palettes else None,
        colourfulness=torch.cat(colours) if colours else None,
        exemplar_colourfulness=torch.cat(exemplar_colours) if exemplar_colours else None,
        timing_ms=timing,
        data=describe_data(data, dataset),
        device=str(device),
        warp=warp,
    )


# --------------------------------------------------------------------------- reports


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def markdown_table(result: ExemplarEvaluation) -> str:
    lines = [
        "| method | PSNR (dB) | SSIM | palette match | colourfulness |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result.rows():
        psnr_text = "-" if math.isnan(r["psnr_mean"]) else f"{r['psnr_mean']:.2f} +- {r['psnr_std']:.2f}"
        ssim_text = "-" if math.isnan(r["ssim_mean"]) else f"{r['ssim_mean']:.3f} +- {r['ssim_std']:.3f}"
        lines.append(
            f"| {r['method']} | {psnr_text} | {ssim_text} | {_fmt(r['palette_mean'], '.3f')} "
            f"| {_fmt(r['colourfulness_mean'], '.1f')} |"
        )
    if result.timing_ms:
        lines += ["", "| image size | ms per image |", "|---|---:|"]
        lines += [f"| {size} x {size} | {ms:.1f} |" for size, ms in result.timing_ms.items()]
    return "\n".join(lines)


def write_csv(result: ExemplarEvaluation, path: str | os.PathLike) -> None:
    keys = ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "palette_mean", "colourfulness_mean")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *keys])
        for r in result.rows():
            writer.writerow([r["method"]] + [_fmt(r[k], ".4f") for k in keys])
        if result.timing_ms:
            writer.writerow([])
            writer.writerow(["image_size", "ms_per_image", "device"])
            for size, ms in result.timing_ms.items():
                writer.writerow([size, f"{ms:.2f}", result.device])


def write_markdown(result: ExemplarEvaluation, path: str | os.PathLike, title: str) -> None:
    text = (
        f"# {title}\n\n"
        f"{result.num_images} held-out images at {result.image_size}x{result.image_size} (seed {result.seed}). "
        "PSNR and SSIM (mean +- std over images) against the colour-jittered target, its own "
        + ("TPS-warped copy" if result.warp == "mild" else "copy flipped, rotated, scaled, shifted and TPS-warped")
        + f" as exemplar (warp {result.warp}); every method keeps the input's luminance. Baselines: transfer_only "
        "(T_ab without the colorization sub-net), correspondence_only (the exemplar's a*b* warped by frozen-feature "
        "correspondence, no learned weights), reinhard (global Lab mean/std transfer of a*b*, Reinhard et al. "
        "2001), luminance_histogram (each pixel the exemplar's mean a*b* at its luminance quantile), gray, "
        "exemplar_copy (the exemplar's a*b* pixel by pixel: what aligning the exemplar would give here, "
        "meaningless for an exemplar from another image). "
        "Palette match and colourfulness: with the next image as exemplar (a*b* histogram intersection with "
        "it, coloured pixels only; Hasler & Suesstrunk colourfulness, 0..255 scale). Timing: the model's "
        f"forward on one image, median, on {result.device}.\n\n"
        f"Data: {result.data or 'not recorded'}.\n\n"
        f"{markdown_table(result)}\n"
    )
    Path(path).write_text(text, encoding="utf-8")


def plot_results(result: ExemplarEvaluation, path: str | os.PathLike, title: str) -> None:
    """Bars of PSNR, SSIM, palette match and colourfulness per method. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows()
    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("palette", "palette match"), ("colourfulness", "colourfulness"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        shown = [r for r in rows if not math.isnan(r[f"{key}_mean"])]
        errors = [r.get(f"{key}_std", 0.0) for r in shown]
        ax.bar([r["method"] for r in shown], [r[f"{key}_mean"] for r in shown], yerr=errors, capsize=4)
        ax.set_ylabel(label)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")  # long names, no overlap
    fig.suptitle(f"{title} ({result.num_images} images, {result.image_size} px)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    result: ExemplarEvaluation, out_dir: str | os.PathLike, *, title: str | None = None
) -> dict[str, Path]:
    """exemplar_eval.csv and .md under out_dir, and exemplar_eval.png with matplotlib."""
    title = title or "Exemplar colorization: held-out evaluation"
    return write_report_files(result, out_dir, REPORT_NAME, title, write_csv, write_markdown, plot_results)


__all__ = [
    "METHODS",
    "REPORT_NAME",
    "ExemplarEvaluation",
    "augmented_self_pair",
    "colourfulness",
    "colourings",
    "luminance_histogram_ab",
    "evaluate_exemplar",
    "markdown_table",
    "plot_results",
    "reinhard_ab",
    "time_model",
    "write_csv",
    "write_markdown",
    "write_report",
]

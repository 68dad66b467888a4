"""SCFT's evaluation on held-out images: the augmented-self protocol (Lee et al., CVPR 2020, Sec. 4).

For image i of a folder (ImageFolder at the model's image_size, sorted, centre crops), the triple is
what training sees: refcolor.data.AugmentedSelfReference with its default settings, drawn with a
torch.Generator seeded with `seed * 1_000_003 + i` on the CPU, one image at a time, so every image
gets the same triple whatever the batch size, device or number of images: the target Y (the
colour-jittered image), its sketch X (random-style XDoG, white paper, dark lines) and the reference R
(Y warped by a random thin-plate spline, with the warp grid saying where each reference pixel came
from). The model colours X with R; everything is measured on [0, 1] images:

- PSNR (dB, per image, MSE over all pixels and channels; identical images count as MAX_PSNR) and
  SSIM (kornia.metrics.ssim, 11 x 11 Gaussian window, averaged over the map and channels) of the
  output against Y, beside two baselines that need no model:
  * copy_reference: R itself (the warped target: right colours, wrong places);
  * mean_colour: R's mean colour laid under X's lines, i.e. fill * X per pixel, where fill is the
    per-channel mean of R over all its pixels and X in [0, 1] is the sketch: white paper (X = 1)
    shows the flat fill, black lines (X = 0) stay black, grey strokes darken it in proportion.
- Correspondence accuracy of the attention (when the model returns it, as SCFTColorizer does with
  return_attention=True): for every sketch feature cell with a true reference cell
  (refcolor.ops.tps_correspondence on the warp grid, as the training triplet loss uses it), whether
  the attention's argmax is that cell (top-1 exact) or within one cell of it (Chebyshev distance
  <= 1 on the reference lattice). Pooled over all valid cells of all images; beside them, chance
  (a uniform random argmax) and "same position", a guess that ignores both images and picks the
  reference cell at the sketch cell's own place: the protocol's warp is mild, so this guess is
  hard to beat on it, and a model only shows that it matches content where it beats it.
- The warp (`warp`): "mild" is the training warp above, under which the same-position guess is
  hard to beat; "strong" (WARPS["strong"] of refcolor.data.augmented_self_reference) composes it
  with a left-right flip for half of the pairs, rotation up to +-30 degrees, scale 0.7 to 1.4 and a
  shift up to 20% of the side, so copying by position scores low and only matching by content
  passes. The correspondence stays exact (the composed grid).
- Palette transfer, with a reference from another image: X of image i coloured with the plain,
  unwarped image i + 1 (cyclically) as R'. Score: the intersection sum_k min(p_k, q_k) of the
  normalised a*b* histograms (CIELAB via kornia.color.rgb_to_lab, 16 x 16 bins over [-128, 128]^2)
  of the coloured pixels (chroma >= MIN_CHROMA = 10; white paper, greys and lines are left out, as
  they would make any two clip-art images look alike) of the output and of R'; 1 means the same
  palette, 0 disjoint palettes or no colour at all in one of them. Beside it, what the two ignoring
  baselines score against R': the image's own colours (Y: a model that disregards the reference)
  and R''s mean colour under X's lines. Needs at least two images.

Outputs: write_report -> scft_eval.csv and .md, and scft_eval.png when matplotlib is installed
(the extra refcolor[plot]).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from refcolor.data.augmented_self_reference import WARPS, AugmentedSelfReference
from refcolor.data.image_folder import ImageFolder
from refcolor.evaluation.guide_psnr import describe_data
from refcolor.evaluation.report_files import write_report_files
from refcolor.inference import flats
from refcolor.inference.full_resolution import line_free_colours
from refcolor.ops import line_regions
from refcolor.ops.tps_correspondence import tps_correspondence

REPORT_NAME = "scft_eval"
MAX_PSNR = 100.0  # dB; identical images count as this, keeping means finite
# model_flat_median / model_flat_mean: the model's output as flats (refcolor.inference.flats: every
# line region of X takes the median / mean of the output over its paper pixels, X's lines on top).
METHODS = ("model", "model_flat_median", "model_flat_mean", "copy_reference", "mean_colour")
PALETTE_METHODS = ("model", "own_colours", "mean_colour")
AB_BINS = 16
AB_RANGE = 128.0
# Pixels below this chroma (white paper, grey and black lines) are left out of the palette: on clip
# art they are most of the picture and would make any two images look alike.
MIN_CHROMA = 10.0
_SEED_STRIDE = 1_000_003


# --------------------------------------------------------------------------- measurements


def psnr(output: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB) of (B, C, H, W) images in [0, 1], float64."""
    mse = ((output.double() - target.double()) ** 2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(1 / mse.clamp_min(10 ** (-MAX_PSNR / 10)))


def ssim(output: Tensor, target: Tensor, window_size: int = 11) -> Tensor:
    """Per-image SSIM of (B, C, H, W) images in [0, 1] (kornia.metrics.ssim, mean over the map)."""
    import kornia.metrics

    return kornia.metrics.ssim(output.float(), target.float(), window_size, max_val=1.0).mean(dim=(-3, -2, -1)).double()


def mean_colour_fill(sketch: Tensor, reference: Tensor) -> Tensor:
    """The mean_colour baseline: reference's per-channel mean colour times the sketch (B, 1, H, W)
    in [0, 1] (white paper keeps the fill, black lines stay black). -> (B, 3, H, W) in [0, 1]."""
    return reference.mean(dim=(-2, -1), keepdim=True) * sketch


def ab_histogram(images: Tensor, bins: int = AB_BINS, min_chroma: float = MIN_CHROMA) -> Tensor:
    """Normalised a*b* histograms (B, bins * bins) of the coloured pixels (chroma sqrt(a*^2 + b*^2)
    >= min_chroma) of (B, 3, H, W) RGB images in [0, 1]; all zeros for an image without any."""
    import kornia.color

    lab = kornia.color.rgb_to_lab(images.float().clamp(0, 1))
    ab = lab[:, 1:].flatten(2)  # (B, 2, H W)
    coloured = ab.pow(2).sum(dim=1) >= min_chroma**2  # (B, H W)
    cell = ((ab + AB_RANGE) / (2 * AB_RANGE) * bins).floor().long().clamp(0, bins - 1)
    flat = cell[:, 0] * bins + cell[:, 1]  # (B, H W)
    counts = torch.zeros(images.shape[0], bins * bins, dtype=torch.float64, device=images.device)
    counts.scatter_add_(1, flat, coloured.double())
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def palette_intersection(images: Tensor, references: Tensor, bins: int = AB_BINS) -> Tensor:
    """Per-image histogram intersection (B,) in [0, 1] of the a*b* histograms of images and references."""
    return torch.minimum(ab_histogram(images, bins), ab_histogram(references, bins)).sum(dim=1)


def flat_outputs(output: Tensor, sketch: Tensor) -> tuple[Tensor, Tensor]:
    """The output (B, 3, H, W) in [0, 1] as flats over the line regions of `sketch` (B, 1, H, W) in
    [0, 1] (refcolor.inference.flats defaults), each region's colour its median and its mean."""
    free = line_free_colours(output, sketch, (output.shape[-2], output.shape[-1]))
    labels = line_regions(sketch.float(), flats.THRESHOLD, flats.GAP, flats.MIN_AREA)
    return tuple(
        flats.flatten(free, sketch, labels=labels, method=m).image.to(output.dtype) for m in ("median", "mean")
    )  # type: ignore[return-value]


def correspondence_hits(
    attention: Tensor, grid: Tensor, query_size: tuple[int, int], key_size: tuple[int, int]
) -> dict[str, Tensor]:
    """Per image: the number of valid sketch cells, of exact and within-one-cell argmax hits, and the
    expected hits of a uniform random argmax (float64 (B,) each).

    attention: (B, hq * wq, hk * wk) weights (or logits: only the argmax counts); grid: the
    reference's warp grid (B, H, W, 2)."""
    hq, wq = query_size
    hk, wk = key_size
    if attention.shape[1:] != (hq * wq, hk * wk):
        raise ValueError(
            f"attention: expected shape (B, {hq * wq}, {hk * wk}) for feature sizes {query_size} and "
            f"{key_size}, got {tuple(attention.shape)}"
        )
    index, valid = tps_correspondence(grid, query_size, key_size)
    guess = attention.argmax(dim=-1)

    def hits(guess: Tensor) -> tuple[Tensor, Tensor]:
        dr = (guess // wk - index // wk).abs()
        dc = (guess % wk - index % wk).abs()
        return (guess == index) & valid, (torch.maximum(dr, dc) <= 1) & valid

    exact, near = hits(guess)
    # The same-position guess: the reference cell whose centre is nearest the sketch cell's centre.
    cells = torch.arange(hq * wq, device=attention.device)
    same_row = (((cells // wq).double() + 0.5) * hk / hq).floor().long().clamp_max(hk - 1)
    same_col = (((cells % wq).double() + 0.5) * wk / wq).floor().long().clamp_max(wk - 1)
    same_exact, same_near = hits((same_row * wk + same_col).expand_as(guess))
    # A uniform guess hits the true cell's 3 x 3 neighbourhood (clipped at the lattice border) with
    # probability (its cell count) / M.
    rows, cols = index // wk, index % wk
    span_r = torch.minimum(rows + 1, torch.full_like(rows, hk - 1)) - (rows - 1).clamp_min(0) + 1
    span_c = torch.minimum(cols + 1, torch.full_like(cols, wk - 1)) - (cols - 1).clamp_min(0) + 1
    m = hk * wk
    validf = valid.double()
    return {
        "valid": validf.sum(1),
        "exact": exact.double().sum(1),
        "within_one": near.double().sum(1),
        "chance_exact": validf.sum(1) / m,
        "chance_within_one": ((span_r * span_c).double() * validf).sum(1) / m,
        "same_exact": same_exact.double().sum(1),
        "same_within_one": same_near.double().sum(1),
    }


# --------------------------------------------------------------------------- the protocol


def augmented_self_triple(image: Tensor, index: int, seed: int = 0, warp: str = "mild") -> dict[str, Tensor]:
    """The protocol's triple for image `index` (3, S, S) in [0, 1]: {"sketch" (1, 1, S, S),
    "reference", "target" (1, 3, S, S), "grid" (1, S, S, 2)}, all in [0, 1] on image's device.
    warp: "mild" (the training warp) or "strong" (WARPS["strong"]: flip, rotation, scale, shift)."""
    generator = torch.Generator().manual_seed(seed * _SEED_STRIDE + index)
    augment = AugmentedSelfReference.with_warp(warp)
    return augment(image.unsqueeze(0), generator)


@dataclass
class SCFTEvaluation:
    """Figures of one evaluation. psnr / ssim: (num_images, len(METHODS)) float64, columns in METHODS
    order; palette: (num_images, len(PALETTE_METHODS)) or None (fewer than two images);
    correspondence: summed counts of correspondence_hits, or None (the model returns no attention)."""

    paths: list[str]
    image_size: int
    seed: int
    psnr: Tensor
    ssim: Tensor
    palette: Tensor | None = None
    correspondence: dict[str, float] | None = None
    methods: tuple[str, ...] = field(default=METHODS)
    data: str = ""  # what was evaluated: the folder (or dataset) the images came from
    warp: str = "mild"  # the reference's warp (WARPS), or "pairs" for evaluate_scft_pairs

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def rows(self) -> list[dict]:
        """One row per method: psnr/ssim mean and std (population, over images) and palette mean."""
        rows = []
        for j, name in enumerate(self.methods):
            row = {
                "method": name,
                "psnr_mean": float(self.psnr[:, j].mean()),
                "psnr_std": float(self.psnr[:, j].std(correction=0)),
                "ssim_mean": float(self.ssim[:, j].mean()),
                "ssim_std": float(self.ssim[:, j].std(correction=0)),
                "palette_mean": math.nan,
            }
            if self.palette is not None and name in PALETTE_METHODS:
                row["palette_mean"] = float(self.palette[:, PALETTE_METHODS.index(name)].mean())
            rows.append(row)
        if self.palette is not None:  # the own-colours baseline has only a palette figure
            k = PALETTE_METHODS.index("own_colours")
            rows.append(
                {
                    "method": "own_colours",
                    "psnr_mean": math.nan,
                    "psnr_std": math.nan,
                    "ssim_mean": math.nan,
                    "ssim_std": math.nan,
                    "palette_mean": float(self.palette[:, k].mean()),
                }
            )
        return rows

    def accuracy(self) -> dict[str, float] | None:
        """{"exact", "within_one", "chance_exact", "chance_within_one", "same_exact", "same_within_one"}
        as fractions of valid cells, and "valid_cells"; None without attention."""
        c = self.correspondence
        if c is None:
            return None
        n = max(c["valid"], 1.0)
        return {
            "exact": c["exact"] / n,
            "within_one": c["within_one"] / n,
            "chance_exact": c["chance_exact"] / n,
            "chance_within_one": c["chance_within_one"] / n,
            "same_exact": c.get("same_exact", math.nan) / n,
            "same_within_one": c.get("same_within_one", math.nan) / n,
            "valid_cells": c["valid"],
        }


def _call(model: nn.Module, sketch: Tensor, reference: Tensor, with_attention: bool):
    """(image in [-1, 1], attention or None, feature sizes or None) from an SCFTColorizer-like model."""
    if not with_attention:
        out = model(sketch, reference)
        return (out if isinstance(out, Tensor) else out.image), None, None
    out = model(sketch, reference, return_attention=True)
    if isinstance(out, Tensor):
        return out, None, None
    return out.image, out.attention, (tuple(out.feature_size), tuple(out.reference_feature_size))


def evaluate_scft(
    model: nn.Module,
    data: str | os.PathLike | torch.utils.data.Dataset,
    *,
    image_size: int | None = None,
    max_images: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
    warp: str = "mild",
) -> SCFTEvaluation:
    """Run the protocol of the module docstring on `data` (a folder, or a dataset of {"image": (3, S, S)
    in [0, 1], "path"} items), with references made by the named `warp` (see WARPS). `model` is called
    as model(sketch, reference, return_attention=True)
    (-> an SCFTColorizerOutput or a bare image) and model(sketch, reference) (-> an image), with
    sketch (B, 1, S, S) and reference (B, 3, S, S) in [-1, 1]; it returns images in [-1, 1].
    image_size: default model.config.image_size."""
    for name, value in (("batch_size", batch_size),):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images: expected an integer >= 1, got {max_images}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if warp not in WARPS:
        raise ValueError(f"warp: expected one of {tuple(WARPS)}, got {warp!r}")
    if image_size is None:
        image_size = getattr(getattr(model, "config", None), "image_size", None)
        if image_size is None:
            raise ValueError("image_size: the model has no config.image_size; pass image_size")
    dataset = data if isinstance(data, torch.utils.data.Dataset) else ImageFolder(data, size=image_size)
    if not isinstance(dataset, Sized):
        raise TypeError(f"data: expected a dataset with a length (map-style), got {type(dataset).__name__}")
    total = len(dataset) if max_images is None else min(max_images, len(dataset))
    if total == 0:
        raise ValueError("data: no images to evaluate")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    was_training = model.training
    model.eval()
    psnrs, ssims, palettes, paths = [], [], [], []
    hits: dict[str, float] | None = {}
    try:
        with torch.no_grad():
            for start in range(0, total, batch_size):
                indices = list(range(start, min(start + batch_size, total)))
                items = [dataset[i] for i in indices]
                paths += [str(item.get("path", i)) for i, item in zip(indices, items, strict=True)]
                triples = [
                    augmented_self_triple(item["image"], i, seed, warp) for i, item in zip(indices, items, strict=True)
                ]
                sketch, reference, target, grid = (
                    torch.cat([t[k] for t in triples]).to(device) for k in ("sketch", "reference", "target", "grid")
                )
                image, attention, sizes = _call(model, sketch * 2 - 1, reference * 2 - 1, with_attention=True)
                output = ((image.float() + 1) / 2).clamp(0, 1)
                flat_median, flat_mean = flat_outputs(output, sketch)
                candidates = (output, flat_median, flat_mean, reference, mean_colour_fill(sketch, reference))
                psnrs.append(torch.stack([psnr(c, target) for c in candidates], dim=1).cpu())
                ssims.append(torch.stack([ssim(c, target) for c in candidates], dim=1).cpu())
                if attention is None:
                    hits = None
                elif hits is not None:
                    for key, per_image in correspondence_hits(attention.float(), grid, *sizes).items():
                        hits[key] = hits.get(key, 0.0) + float(per_image.sum())
                if total >= 2:  # palette transfer from the next image, unwarped
                    other = torch.stack([dataset[(i + 1) % total]["image"] for i in indices]).to(device)
                    image, _, _ = _call(model, sketch * 2 - 1, other * 2 - 1, with_attention=False)
                    transferred = ((image.float() + 1) / 2).clamp(0, 1)
                    palettes.append(
                        torch.stack(
                            [
                                palette_intersection(transferred, other),
                                palette_intersection(target, other),
                                palette_intersection(mean_colour_fill(sketch, other), other),
                            ],
                            dim=1,
                        ).cpu()
                    )
    finally:
        model.train(was_training)
    return SCFTEvaluation(
        paths=paths,
        image_size=int(target.shape[-1]),
        seed=seed,
        psnr=torch.cat(psnrs),
        ssim=torch.cat(ssims),
        palette=torch.cat(palettes) if palettes else None,
        correspondence=hits or None,
        data=describe_data(data, dataset),
        warp=warp,
    )


# --------------------------------------------------------------------------- reports


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def markdown_table(result: SCFTEvaluation) -> str:
    lines = ["| method | PSNR (dB) | SSIM | palette match |", "|---|---:|---:|---:|"]
    for r in result.rows():
        psnr_text = "-" if math.isnan(r["psnr_mean"]) else f"{r['psnr_mean']:.2f} +- {r['psnr_std']:.2f}"
        ssim_text = "-" if math.isnan(r["ssim_mean"]) else f"{r['ssim_mean']:.3f} +- {r['ssim_std']:.3f}"
        lines.append(f"| {r['method']} | {psnr_text} | {ssim_text} | {_fmt(r['palette_mean'], '.3f')} |")
    acc = result.accuracy()
    if acc is not None:
        lines += [
            "",
            "| attention correspondence | model | chance | same position |",
            "|---|---:|---:|---:|",
            f"| top-1 exact | {acc['exact']:.1%} | {acc['chance_exact']:.1%} | {acc['same_exact']:.1%} |",
            f"| within one cell | {acc['within_one']:.1%} | {acc['chance_within_one']:.1%} "
            f"| {acc['same_within_one']:.1%} |",
        ]
    return "\n".join(lines)


def write_csv(result: SCFTEvaluation, path: str | os.PathLike) -> None:
    """One row per method, then the correspondence figures as rows of their own."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "palette_mean"])
        for r in result.rows():
            writer.writerow(
                [r["method"]]
                + [_fmt(r[k], ".4f") for k in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "palette_mean")]
            )
        acc = result.accuracy()
        if acc is not None:
            writer.writerow([])
            writer.writerow(["correspondence", "model", "chance", "same_position", "valid_cells"])
            for name, key in (("top1_exact", "exact"), ("within_one_cell", "within_one")):
                writer.writerow(
                    [
                        name,
                        f"{acc[key]:.4f}",
                        f"{acc['chance_' + key]:.4f}",
                        f"{acc['same_' + key]:.4f}",
                        int(acc["valid_cells"]),
                    ]
                )


def write_markdown(result: SCFTEvaluation, path: str | os.PathLike, title: str) -> None:
    if result.warp == "pairs":
        protocol = "(target, reference) pairs of one subject, the sketch drawn from the target"
    else:
        settings = ", ".join(f"{k} {v}" for k, v in WARPS[result.warp].items()) or "TPS jitter only"
        protocol = f"augmented-self triples (seed {result.seed}; warp {result.warp}: {settings})"
    text = (
        f"# {title}\n\n"
        f"{result.num_images} images at {result.image_size}x{result.image_size}, {protocol}: "
        f"PSNR and SSIM against the target, mean +- std over images. Baselines: "
        f"copy_reference (the reference as given), mean_colour (the reference's mean colour under "
        f"the sketch's lines). model_flat_median / model_flat_mean: the model's output as flats, every area "
        f"enclosed by the sketch's lines (refcolor.ops.line_regions) one colour, the median / mean of the "
        f"output over it, the lines on top. Palette match: a*b* histogram intersection (coloured pixels, "
        f"chroma >= {MIN_CHROMA:g}) of the output and "
        + ("the pair's reference" if result.warp == "pairs" else "an unwarped reference from the next image")
        + " (own_colours: the target's own colours against it).\n\n"
        f"Data: {result.data or 'not recorded'}.\n\n"
        f"{markdown_table(result)}\n"
    )
    Path(path).write_text(text, encoding="utf-8")


def plot_results(result: SCFTEvaluation, path: str | os.PathLike, title: str) -> None:
    """Bars of PSNR and SSIM per method (mean +- std), the attention accuracy against chance and the
    palette match, as a PNG at `path`. Needs matplotlib (ImportError otherwise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows() if not math.isnan(r["psnr_mean"])]
    names = [r["method"] for r in rows]
    colours = ["tab:blue", "tab:cyan", "tab:purple", "tab:gray", "tab:orange"][: len(rows)]
    panels = 2 + (result.accuracy() is not None) + (result.palette is not None)
    fig, grid = plt.subplots(1, panels, figsize=(3.6 * panels, 3.6), squeeze=False)
    axes = list(grid[0])
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.bar(names, [r[f"{key}_mean"] for r in rows], yerr=[r[f"{key}_std"] for r in rows], color=colours, capsize=4)
        ax.set_ylabel(label)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")  # long names, no overlap
    next_ax = 2
    acc = result.accuracy()
    if acc is not None:
        ax = axes[next_ax]
        next_ax += 1
        x = range(2)
        for offset, prefix, label, colour in (
            (-0.27, "", "attention", "tab:blue"),
            (0.0, "same_", "same position", "tab:green"),
            (0.27, "chance_", "chance", "tab:gray"),
        ):
            values = [acc[prefix + "exact"], acc[prefix + "within_one"]]
            ax.bar([i + offset for i in x], values, width=0.27, label=label, color=colour)
        ax.set_xticks(list(x), ["top-1 exact", "within one cell"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of valid cells")
        ax.legend()
    if result.palette is not None:
        ax = axes[next_ax]
        means = result.palette.mean(dim=0).tolist()
        ax.bar(list(PALETTE_METHODS), means, color=["tab:blue", "tab:green", "tab:orange"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("a*b* histogram intersection")
        ax.set_title("palette vs another reference", fontsize=9)
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(f"{title} ({result.num_images} images, {result.image_size} px)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: SCFTEvaluation, out_dir: str | os.PathLike, *, title: str | None = None) -> dict[str, Path]:
    """scft_eval.csv and .md under out_dir (created), and scft_eval.png when matplotlib is installed;
    -> {"csv": path, "md": path[, "png": path]}."""
    title = title or "SCFT: augmented-self evaluation"
    return write_report_files(result, out_dir, REPORT_NAME, title, write_csv, write_markdown, plot_results)


__all__ = [
    "MAX_PSNR",
    "METHODS",
    "PALETTE_METHODS",
    "REPORT_NAME",
    "SCFTEvaluation",
    "ab_histogram",
    "augmented_self_triple",
    "correspondence_hits",
    "evaluate_scft",
    "markdown_table",
    "mean_colour_fill",
    "palette_intersection",
    "plot_results",
    "psnr",
    "ssim",
    "write_csv",
    "write_markdown",
    "write_report",
]

"""How far frozen EfficientNet-Lite0 features alone match a sketch to its reference (issue 27): the
training-free measurement behind SCFTColorizerConfig.frozen_layers' default.

For the first N images of a folder, the evaluation's triple (refcolor.evaluation.scft_eval
.augmented_self_triple, seed 0, --warp mild or strong): the sketch, and the reference's outline
(XDoG at its fixed defaults, what SCFTColorizer does). Per layer choice, the frozen features of both
(refcolor.models.scft_colorizer.FrozenSketchFeatures: every layer bilinear to the lattice,
L2-normalised, concatenated, normalised) and their cosine nearest neighbour, scored as the
evaluation scores attention: within one cell of the true cell (tps_correspondence on the warp
grid), over all valid cells and over foreground cells (at least 10% of the cell's target pixels
darker than 0.9 in every channel), beside the same-position guess; and, against the colour
reference's gray image instead of its outline ("vs colour"). Then the reference's cell patches
moved by softmax(cosine / T), multiplied by the sketch, scored by PSNR against the target: a
training-free colorization, beside copying the reference and its mean colour.

    OMP_NUM_THREADS=1 python scripts/scft_frozen_match.py data/openclipart128/heldout --images 40 \\
        --layers stage5,stage6 --layers stem,stage2,stage3,stage4 --temperature 0.01 0.03 0.1
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from refcolor.data.image_folder import ImageFolder
from refcolor.data.sketch import xdog
from refcolor.evaluation.scft_eval import augmented_self_triple, psnr
from refcolor.models.scft_colorizer import FrozenSketchFeatures
from refcolor.ops.tps_correspondence import tps_correspondence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="image folder (the held-out split)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=128, help="image side (px)")
    parser.add_argument("--lattice", type=int, default=16, help="lattice side (cells)")
    parser.add_argument("--warp", choices=("mild", "strong"), default="strong")
    parser.add_argument("--layers", action="append", help="comma-separated layers; repeat for more choices")
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    choices = [tuple(c.split(",")) for c in (args.layers or ["stage5,stage6"])]
    nets = {c: FrozenSketchFeatures(c).load_pretrained() for c in choices}
    dataset = ImageFolder(args.data, size=args.size)
    n, L, p = min(args.images, len(dataset)), args.lattice, args.size // args.lattice
    counts = {c: {"valid": 0, "fg": 0, "colour": 0} for c in choices}
    psnrs: dict = {c: dict.fromkeys(args.temperature, 0.0) for c in choices}
    same = {"valid": 0, "fg": 0}
    cells = {"valid": 0, "fg": 0}
    copy = mean = 0.0
    with torch.no_grad():
        for i in range(n):
            t = augmented_self_triple(dataset[i]["image"], i, 0, args.warp)
            sketch, reference, target = t["sketch"], t["reference"], t["target"]
            index, valid = tps_correspondence(t["grid"], (L, L), (L, L))
            dark = (target.min(1, keepdim=True).values < 0.9).float()
            fg = valid & (F.avg_pool2d(dark, p) >= 0.1).flatten(1)

            def near(guess, index=index):
                return torch.maximum((guess // L - index // L).abs(), (guess % L - index % L).abs()) <= 1

            position = near(torch.arange(L * L).expand_as(index))
            for key, mask in (("valid", valid), ("fg", fg)):
                cells[key] += int(mask.sum())
                same[key] += int((position & mask).sum())
            patches = F.unfold(reference, p, stride=p).transpose(1, 2)
            for c, net in nets.items():
                q = net(sketch, (L, L)).flatten(2).transpose(1, 2)
                k = net(xdog(reference), (L, L)).flatten(2).transpose(1, 2)
                gray = net(reference.mean(1, keepdim=True), (L, L)).flatten(2).transpose(1, 2)
                sim = q @ k.transpose(1, 2)
                hit = near(sim.argmax(-1))
                counts[c]["valid"] += int((hit & valid).sum())
                counts[c]["fg"] += int((hit & fg).sum())
                counts[c]["colour"] += int((near((q @ gray.transpose(1, 2)).argmax(-1)) & fg).sum())
                for temp in args.temperature:
                    moved = torch.softmax(sim / temp, -1) @ patches
                    warped = F.fold(moved.transpose(1, 2), (args.size, args.size), p, stride=p)
                    psnrs[c][temp] += float(psnr(warped * sketch, target).sum())
            copy += float(psnr(reference, target).sum())
            mean += float(psnr(reference.mean((2, 3), keepdim=True) * sketch, target).sum())
    print(f"{n} images of {args.data}, {args.warp} warp, {L} x {L} lattice at {args.size} px")
    print(f"copy the reference {copy / n:.2f} dB, mean colour {mean / n:.2f} dB")
    print(f"same position: {same['valid'] / cells['valid']:.1%} valid, {same['fg'] / cells['fg']:.1%} foreground")
    temps = " | ".join(f"PSNR T={t}" for t in args.temperature)
    print(f"| layers | channels | within one (valid) | within one (fg) | fg vs colour | {temps} |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(args.temperature))
    for c, net in nets.items():
        r = counts[c]
        dbs = " | ".join(f"{psnrs[c][t] / n:.2f}" for t in args.temperature)
        print(
            f"| {', '.join(c)} | {net.channels} | {r['valid'] / cells['valid']:.1%} | {r['fg'] / cells['fg']:.1%} | "
            f"{r['colour'] / cells['fg']:.1%} | {dbs} |"
        )


if __name__ == "__main__":
    main()

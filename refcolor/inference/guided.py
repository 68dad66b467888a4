"""Interactive GuidingPainter (Cho et al. 2022): show the user the regions the model split a sketch
into, numbered in the order it asks for colours, then paint from one colour per region number.

    painter = GuidedColorizer.from_checkpoint("runs/guide")   # or GuidedColorizer.pretrained(): the bundled model
    regions = painter.regions("sketch.png")         # RegionMap: labels 1..R, per-region stats
    regions.overlay().save("regions.png")           # numbered overlay for the user
    painter.colorize("sketch.png", ["#d04030", [40, 90, 200]]).save("out.png")  # regions 1 and 2

Region numbers are compact: the model's region channels that cover at least one pixel of the
sketch (at the sketch's size), in channel order, which is the model's priority order; number 1 is
the region the model most wants a colour for. Colours are given for the first regions; the others
get no hint and the model picks their colour.

Any sketch size works, as any input form (images.to_tensor): the sketch is prepared as training
prepares it (sketch_preparation.prepare_sketch) with its shorter side at the training size, the
aspect kept and white padding to a multiple of 2**depth; the model's regions (nearest) and image
(bicubic, with the sketch's own full-resolution lines laid over it unless keep_lines=False:
refcolor.inference.full_resolution) are cropped back and mapped to the sketch's size.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from refcolor import images
from refcolor.data.sketch_preparation import crop, pad_to_multiple, prepare_sketch, scaled_size
from refcolor.images import region_palette
from refcolor.inference import flats
from refcolor.inference.full_resolution import line_free_colours
from refcolor.models.bundled import bundled_weights_path
from refcolor.models.guiding_painter import GuidingPainter
from refcolor.models.loading import load_model, resolve_device
from refcolor.ops import line_regions

Color = tuple[int, int, int]

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_COLOR_FORMS = '"#rrggbb", "#rgb" or [r, g, b] with integers 0..255'
_ANCHOR_SIDE = 256  # the label-placement distance transform runs on a label map at most this big


# --------------------------------------------------------------------------- colours


def _parse_color(value, index: int) -> Color:
    where = f"colors[{index}]"
    if isinstance(value, str):
        if not _HEX.fullmatch(value):
            raise ValueError(f"{where}: expected {_COLOR_FORMS}, got {value!r} (not a hex colour)")
        digits = value[1:] if len(value) == 7 else "".join(2 * d for d in value[1:])
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ValueError(f"{where}: expected {_COLOR_FORMS}, got {value!r} ({len(value)} numbers, not 3)")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{where}: expected {_COLOR_FORMS}, got {value!r} ({v!r} is not an integer)")
            if not 0 <= int(v) <= 255:
                raise ValueError(f"{where}: expected {_COLOR_FORMS}, got {value!r} ({v} is outside 0..255)")
        red, green, blue = (int(v) for v in value)
        return red, green, blue
    raise ValueError(f"{where}: expected {_COLOR_FORMS}, got {type(value).__name__} {value!r}")


def parse_colors(data) -> list[Color]:
    """Validate a colour list (the decoded JSON of a colours file): entry i is the colour of region
    i + 1, as "#rrggbb", "#rgb" or [r, g, b] (integers 0..255). -> [(r, g, b), ...].
    ValueError (one line, naming the entry) on anything else."""
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"colors must be a list of {_COLOR_FORMS}, got {type(data).__name__}")
    return [_parse_color(value, i) for i, value in enumerate(data)]


def read_colors(path: str | os.PathLike) -> list[Color]:
    """parse_colors of a JSON file; FileNotFoundError / ValueError with one-line messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"colors file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"colors file {path} is not UTF-8 text: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"colors file {path} is not valid JSON: {err}") from err
    try:
        return parse_colors(data)
    except ValueError as err:
        raise ValueError(f"colors file {path}: {err}") from err


# --------------------------------------------------------------------------- sketches


def load_sketches(sketch) -> tuple[Tensor, bool]:
    """A path, PIL image, tensor or numpy array (images.to_tensor) -> ((B, C, H, W) in [0, 1],
    given_as_image: whether a PIL image, not a tensor, should be returned)."""
    return images.to_tensor(sketch, "sketch", op="GuidedColorizer"), not isinstance(sketch, Tensor)


# --------------------------------------------------------------------------- region maps


def _distance_to_boundary(labels: Tensor) -> Tensor:
    """Chessboard distance (pixels) of each pixel to the nearest pixel whose 3x3 neighbourhood holds
    another label or the image border; (h, w) float."""
    x = F.pad(labels[None, None].float(), (1, 1, 1, 1), value=-1.0)  # the border counts as a boundary
    high = F.max_pool2d(x, 3, stride=1)
    low = -F.max_pool2d(-x, 3, stride=1)
    big = float(labels.numel())
    depth = torch.where(high != low, 0.0, big)
    for _ in range(max(labels.shape)):
        grown = -F.max_pool2d(-depth, 3, stride=1, padding=1) + 1  # min over the 3x3 neighbours, plus one
        new = torch.minimum(depth, grown)
        if torch.equal(new, depth):
            break
        depth = new
    return depth[0, 0]


def _nearest_to_centroid(mask: Tensor) -> tuple[int, int]:
    ys, xs = mask.nonzero(as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    i = int(((ys - cy) ** 2 + (xs - cx) ** 2).argmin())
    return int(xs[i]), int(ys[i])


def _anchors(labels: Tensor, count: int) -> list[tuple[int, int]]:
    """Per region 1..count an (x, y) pixel inside it, far from its edges: the deepest pixel of a
    distance transform (computed on a map scaled down to at most _ANCHOR_SIDE, ties broken towards
    the centroid); for regions lost in that scaling, the region pixel nearest the centroid."""
    H, W = labels.shape
    scale = min(1.0, _ANCHOR_SIDE / max(H, W))
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    small = labels if (h, w) == (H, W) else F.interpolate(labels[None, None].float(), (h, w), mode="nearest-exact")
    small = small.reshape(h, w).long()
    depth = _distance_to_boundary(small)
    anchors = []
    for rank in range(1, count + 1):
        mask = small == rank
        point = None
        if mask.any():
            deepest = mask & (depth == depth[mask].max())
            sx, sy = _nearest_to_centroid(deepest)
            x, y = min(W - 1, int((sx + 0.5) * W / w)), min(H - 1, int((sy + 0.5) * H / h))
            point = (x, y) if labels[y, x] == rank else None
        anchors.append(point or _nearest_to_centroid(labels == rank))
    return anchors


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


@dataclass
class RegionMap:
    """The regions of one sketch at its own size.

    labels: (H, W) int64, region number 1..R of each pixel (0 is never used).
    regions: one dict per region, in number order: {"rank": number, "channel": the model's region
        channel, "pixels": count, "bbox": [x0, y0, x1, y1] inclusive pixel coordinates, "anchor":
        [x, y] a pixel inside the region, where the overlay writes its number}.
    sketch: (1, H, W) in [0, 1], the line drawing the model saw (for the overlay).
    working_size: (h, w) the model ran at.
    """

    labels: Tensor
    regions: list[dict]
    sketch: Tensor
    working_size: tuple[int, int]
    channels: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.channels = [r["channel"] for r in self.regions]

    def __len__(self) -> int:
        return len(self.regions)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) like PIL."""
        return self.labels.shape[1], self.labels.shape[0]

    def to_json(self) -> dict:
        return {"size": list(self.size), "regions": [dict(r) for r in self.regions]}

    def overlay(self, *, line_strength: float = 0.6) -> Image.Image:
        """The sketch faded (lines at 1 - line_strength) over a distinct tint per region, each region's
        number written at its anchor (black on a white outline). Numbers that would overlap one of a
        higher-priority region are left out (their regions are tiny slivers next to it)."""
        palette = torch.cat([torch.ones(1, 3), region_palette(len(self))])  # index 0 unused
        faded = 1 - line_strength * (1 - self.sketch[0])
        rgb = palette[self.labels] * faded[..., None]
        image = Image.fromarray((rgb * 255).round().to(torch.uint8).numpy(), "RGB")
        W, H = self.size
        font = _font(max(10, min(28, round(min(W, H) / 22))))
        draw = ImageDraw.Draw(image)
        taken: list[tuple[int, int, int, int]] = []
        for region in self.regions:
            text = str(region["rank"])
            x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=1)
            x, y = region["anchor"]
            left = min(max(0, x - (x1 - x0) // 2), max(0, W - (x1 - x0)))
            top = min(max(0, y - (y1 - y0) // 2), max(0, H - (y1 - y0)))
            box = (left, top, left + x1 - x0, top + y1 - y0)
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                continue
            taken.append(box)
            draw.text(
                (left - x0, top - y0), text, fill=(0, 0, 0), font=font, stroke_width=1, stroke_fill=(255, 255, 255)
            )
        return image


def region_map(channel_map: Tensor, sketch: Tensor, working_size: tuple[int, int]) -> RegionMap:
    """RegionMap of an (H, W) map of the model's region channels (0 = highest priority)."""
    counts = torch.bincount(channel_map.flatten())
    channels = counts.nonzero().flatten().tolist()
    lut = torch.zeros(len(counts), dtype=torch.int64)
    lut[channels] = torch.arange(1, len(channels) + 1)
    labels = lut[channel_map]
    anchors = _anchors(labels, len(channels))
    regions = []
    for rank, channel in enumerate(channels, start=1):
        mask = labels == rank
        ys = mask.any(dim=1).nonzero().flatten()
        xs = mask.any(dim=0).nonzero().flatten()
        regions.append(
            {
                "rank": rank,
                "channel": channel,
                "pixels": int(counts[channel]),
                "bbox": [int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])],
                "anchor": list(anchors[rank - 1]),
            }
        )
    return RegionMap(labels, regions, sketch, working_size)


# --------------------------------------------------------------------------- the colorizer


class GuidedColorizer:
    """A GuidingPainter for interactive use on sketches of any size (see the module docstring).

    snap: the model's proposed regions follow the drawing (refcolor.inference.flats.snap_regions:
        each area enclosed by the sketch's lines, at the sketch's own size, joins the proposed
        region that covers most of it; the priority order stays the model's). True by default: on
        the held-out split it puts the borders between numbered regions on the lines and scores as
        well as the unsnapped regions (docs/training_log.md, "Flats").
    flat: the default of colorize(flat=...): one flat colour per enclosed area, the lines on top
        (refcolor.inference.flats).
    flat_method, threshold, gap, min_area: how the flats choose an unhinted region's colour and
        find the line regions (refcolor.inference.flats; the same regions snap the model's).
    """

    def __init__(
        self,
        model: GuidingPainter,
        *,
        device: str | torch.device = "cpu",
        source: Path | None = None,
        keep_lines: bool = True,
        snap: bool = True,
        flat: bool = False,
        flat_method: str = "median",
        threshold: float = flats.THRESHOLD,
        gap: int = flats.GAP,
        min_area: int = flats.MIN_AREA,
    ):
        """keep_lines: lay the sketch's own lines, at its full resolution, over the upsampled
        colours of colorize() (crisp lines at any size); False returns the model's output resized alone."""
        if not isinstance(model, GuidingPainter):
            raise TypeError(f"model: expected a GuidingPainter, got {type(model).__name__}")
        if flat_method not in flats.METHODS:
            raise ValueError(f"flat_method: expected one of {', '.join(flats.METHODS)}, got {flat_method!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.source = source
        self.keep_lines = bool(keep_lines)
        self.snap = bool(snap)
        self.flat = bool(flat)
        self.flat_method = flat_method
        self.line_options: dict[str, Any] = {"threshold": threshold, "gap": gap, "min_area": min_area}

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", *, keep_lines: bool = True, **options
    ) -> GuidedColorizer:
        """Load a "guide" model from a run directory, .safetensors weights or a .pt checkpoint;
        options (snap, flat, flat_method, threshold, gap, min_area) as the constructor's."""
        device = resolve_device(device)
        loaded = load_model(path, expected_kind="guide", device=device)
        # load_model checked the kind and __init__ checks the type.
        model = cast(GuidingPainter, loaded.model)
        return cls(model, device=device, source=loaded.source, keep_lines=keep_lines, **options)

    @classmethod
    def pretrained(cls, device: str | torch.device = "cpu", *, keep_lines: bool = True, **options) -> GuidedColorizer:
        """The guide model bundled with refcolor (refcolor/models/pretrained/guide.safetensors, its card
        guide.md); options as from_checkpoint. FileNotFoundError when this build bundles none."""
        return cls.from_checkpoint(bundled_weights_path("guide"), device=device, keep_lines=keep_lines, **options)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the model runs at for a height x width sketch: the shorter side at the training
        size, the aspect kept, padded up to multiples of 2**depth."""
        h, w = scaled_size(height, width, self.config.image_size)
        m = 2**self.config.depth
        return h + -h % m, w + -w % m

    def _prepare(self, sketches: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """(B, C, H, W) in [0, 1] -> (the model's input in [-1, 1] on its device, white-padded to
        the model's multiple; box (top, left, h, w) of the sketch inside it)."""
        size = scaled_size(sketches.shape[-2], sketches.shape[-1], self.config.image_size)
        padded, box = pad_to_multiple(prepare_sketch(sketches.float(), size), 2**self.config.depth, 1.0)
        return images.to_model_range(padded).to(self.device), box

    def _channel_maps(
        self, x: Tensor, box: tuple[int, int, int, int], lines: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The model's region channel per pixel at the sketch's size (nearest), snapped to the line
        regions of `lines` (B, 1, H, W) when self.snap: (channel maps (B, H, W) int64 on the CPU,
        the model's channels at the working size (B, h', w') padding included, line regions or None)."""
        working = self.model.regions(x)
        size = (lines.shape[-2], lines.shape[-1])
        channels = crop(working, box).cpu()
        maps = F.interpolate(channels[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
        if not self.snap:
            return maps, working, None
        labels = line_regions(lines, **self.line_options)
        return flats.snap_regions(maps, labels), working, labels

    def regions(self, sketch) -> RegionMap:
        """The numbered regions of one sketch (a path, PIL image, array, or (C, H, W) / (1, C, H, W) tensor)."""
        sketches, _ = load_sketches(sketch)
        if sketches.shape[0] != 1:
            raise ValueError(f"sketch: regions() takes one sketch, got a batch of {sketches.shape[0]}")
        x, box = self._prepare(sketches)
        lines = prepare_sketch(sketches.float()).cpu()  # at the sketch's own size: the overlay's and the snap's lines
        channel_map = self._channel_maps(x, box, lines)[0][0]
        return region_map(channel_map, lines[0], (x.shape[-2], x.shape[-1]))

    def _paint(self, sketch, colors) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, bool]:
        """The model's output for `colors` on each sketch's (snapped) regions: (soft output (B, 3, H, W),
        its colours without the model's painted lines at the sketch's size, the sketch's lines
        (B, 1, H, W), the per-pixel hint colours (B, 4, H, W) = [rgb in [0, 1], given], the line
        regions or None, as_image)."""
        parsed = parse_colors(colors)
        sketches, as_image = load_sketches(sketch)
        x, box = self._prepare(sketches)
        lines = prepare_sketch(sketches.float()).cpu()  # at the sketch's own size
        channel_maps, working, labels = self._channel_maps(x, box, lines)
        mapped = []  # per sketch: the channel each colour goes to
        for b, channel_map in enumerate(channel_maps):
            present = torch.bincount(channel_map.flatten()).nonzero().flatten().tolist()
            if len(parsed) > len(present):
                which = f" (sketch {b} of the batch)" if len(channel_maps) > 1 else ""
                raise ValueError(
                    f"colors: {len(parsed)} colours given but the sketch{which} has only {len(present)} regions "
                    f"(numbered 1..{len(present)})"
                )
            mapped.append(present[: len(parsed)])
        counts = [chans[-1] + 1 if chans else 0 for chans in mapped]
        nc = self.model.num_segments
        # Channels below a sketch's count that got no colour cover no pixel at the sketch's size (at
        # most sub-pixel specks at the working size): they keep a neutral gray; those above a
        # sketch's count get no hint through num_hints.
        table = torch.zeros(len(mapped), max(counts + [1]), 3)
        given = torch.zeros(len(mapped), nc + 1, dtype=torch.bool)
        rgb = torch.tensor(parsed, dtype=torch.float32).reshape(-1, 3) / 127.5 - 1
        for b, chans in enumerate(mapped):
            table[b, chans] = rgb
            given[b, chans] = True
        if self.snap:
            # The model paints the snapped regions: inside the sketch's box, the snapped map taken
            # back to the working size (nearest, as the regions came up); the white padding keeps
            # the model's own channels, and so do the unhinted areas (flats.paint_channels).
            top, left, h, w = box
            small = F.interpolate(channel_maps[:, None].float(), size=(h, w), mode="nearest-exact")[:, 0].long()
            snapped = working.clone()
            snapped[:, top : top + h, left : left + w] = small.to(working.device)
            working = flats.paint_channels(working, snapped, torch.tensor(counts))
            segments = F.one_hot(working, nc).permute(0, 3, 1, 2).to(x.dtype)
            with torch.no_grad():
                hints = self.model.hint_generator(segments, colors=table.to(self.device), num_hints=counts)
                output = self.model.paint(x, hints, segments)
        else:
            output = self.model.colorize(x, table.to(self.device), num_hints=counts)
        output = crop(images.from_model_range(output.float()), box).cpu()
        working_sketch = crop(images.from_model_range(x.float()), box).cpu()
        size = (sketches.shape[-2], sketches.shape[-1])
        line_free = line_free_colours(output, working_sketch, size)
        # A sketch at the working size keeps the model's own lines: nothing blurred to restore.
        if self.keep_lines and output.shape[-2:] != sketches.shape[-2:]:
            soft = line_free * lines
        else:
            soft = images.resize_output(output, size)
        # The colour given for each pixel's region (what the flats keep exact).
        padded = torch.cat([table, torch.zeros(len(mapped), nc + 1 - table.shape[1], 3)], dim=1)
        index = channel_maps.clamp_max(nc)
        hint_rgb = torch.stack(
            [images.from_model_range(padded[b][index[b]]).permute(2, 0, 1) for b in range(len(mapped))]
        )
        hint_given = torch.stack([given[b][index[b]] for b in range(len(mapped))])[:, None]
        return soft, line_free, lines, torch.cat([hint_rgb, hint_given.float()], dim=1), labels, as_image

    def flats(self, sketch, colors) -> tuple[Tensor, flats.Flats]:
        """Soft and flat output for the same colours (one model pass): (the soft output (B, 3, H, W)
        in [0, 1] as colorize(flat=False) gives it, the Flats on the CPU: .image the flat picture,
        .layer the RGBA flats layer with transparent lines). Every area enclosed by the lines takes
        the colour given for the (snapped) region it lies in, or, unhinted, the `flat_method` of the
        model's output over it."""
        soft, line_free, lines, hints, labels, _ = self._paint(sketch, colors)
        result = flats.flatten(
            line_free,
            lines,
            hints=hints[:, :3],
            hint_mask=hints[:, 3:] > 0,
            labels=labels,
            method=self.flat_method,
            **self.line_options,
        )
        return soft, result

    def colorize(self, sketch, colors, *, flat: bool | None = None):
        """Paint `sketch` with colors[i] as the colour of region i + 1 (numbering of regions()).

        colors: "#rrggbb" / "#rgb" strings or [r, g, b] integers 0..255; fewer than the regions is
        normal (the rest get no hint), more is a ValueError. A tensor batch gets the same colour list
        applied to each sketch's own regions. flat: one flat colour per area enclosed by the lines
        (flats(); default: the constructor's `flat`). Returns a PIL RGB image of the sketch's size
        for a path, PIL image or numpy array, else a (B, 3, H, W) tensor in [0, 1] on the input's device."""
        flat = self.flat if flat is None else bool(flat)
        as_image = not isinstance(sketch, Tensor)
        if flat:
            output = self.flats(sketch, colors)[1].image
        else:
            output = self._paint(sketch, colors)[0]
        if as_image:
            return images.tensor_to_pil(output[0])
        return output.to(sketch.device)


__all__ = [
    "GuidedColorizer",
    "RegionMap",
    "load_sketches",
    "parse_colors",
    "read_colors",
    "region_map",
]

"""GuidingPainter training (Cho et al. 2022): random-style XDoG sketches of the target, Gumbel
segments at a temperature annealed over the run (1 -> 0.1), hints of the first Nh regions (Nh from
Eq. 3) and the official losses (L1 30, adversarial 0.2, hint consistency 5, smoothness 1)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.data.sketch import SketchExtractor
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.images import from_model_range, region_palette
from refcolor.losses import GuidingPainterLossWeights
from refcolor.models.guiding_painter import (
    GuidingPainter,
    hint_consistency_loss,
    region_usage_loss,
    smoothness_loss,
)
from refcolor.train.tasks.base import Task


class GuideTask(Task):
    kind = "guide"
    loss_defaults = GuidingPainterLossWeights()

    def __init__(self, config, device):
        super().__init__(config, device)
        self.sketcher = SketchExtractor()

    def set_backend(self, backend: str) -> None:
        cast(GuidingPainter, self.generator).hint_generator.backend = backend
        self.backend = backend

    def temperature(self, step: int) -> float:
        # The schedule's length is fixed when the run starts (TrainConfig.fix_schedules), not the
        # current --steps, so a resumed run continues the same annealing.
        length = self.config.temperature_steps or self.config.steps
        return self.model_config.temperature(step, length)

    def prepare(self, images: Tensor, rng: torch.Generator) -> dict[str, Tensor]:
        with torch.no_grad():
            sketch = prepare_sketch(images, extract="always", extractor=self.sketcher, generator=rng)
        return {"sketch": sketch * 2 - 1, "target": images * 2 - 1}

    def forward(self, generator: nn.Module, data: dict, step: int, rng: torch.Generator) -> dict:
        out = generator(data["sketch"], data["target"], tau=self.temperature(step), generator=rng)
        return {"fake": out.output, "segments": out.segments, "logits": out.logits}

    def losses(self, data: dict, out: dict, rng: torch.Generator) -> dict[str, Tensor]:
        target = data["target"].float()
        terms = {
            "l1": F.l1_loss(out["fake"].float(), target),
            "hint": hint_consistency_loss(out["segments"].float(), target, backend=self.backend),
            "smoothness": smoothness_loss(out["logits"].float()),
        }
        if self.weights["usage"] > 0:
            terms["usage"] = region_usage_loss(out["logits"], self.config.usage_regions)
        return terms

    @torch.no_grad()
    def sample_columns(self, generator: nn.Module, data: dict) -> list[tuple[str, Tensor]]:
        sketch, target = data["sketch"], data["target"]
        B, Nc = sketch.shape[0], self.model_config.num_segments
        # Rows show 0 .. Nc hints, spread evenly, so one grid shows how hints steer the output.
        counts = torch.linspace(0, Nc, B).round().long() if B > 1 else torch.tensor([Nc // 3])
        out = generator(sketch, target, tau=None, num_hints=counts.to(sketch.device))
        regions = out.segments.argmax(dim=1)
        palette = region_palette(Nc).to(sketch.device)
        region_image = palette[regions].permute(0, 3, 1, 2) * (0.5 + 0.5 * from_model_range(sketch))
        colors, mask = out.hints[:, :3], out.hints[:, 3:]
        hint_image = from_model_range(colors) * mask + 0.5 * (1 - mask)  # gray where no hint
        return [
            ("sketch", from_model_range(sketch)),
            ("regions", region_image),
            ("hints", hint_image),
            ("output", from_model_range(out.output)),
            ("target", from_model_range(target)),
        ]


__all__ = ["GuideTask"]

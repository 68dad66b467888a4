"""Start a training run from another model's weights (TrainConfig.init_weights): a fine-tune.

The source is anything refcolor.models.loading.load_model reads (a .safetensors model, a run
directory, a checkpoint) or "bundled" for this install's bundled weights of the run's model kind.
Every generator tensor of the new model must come from the source, with one exception: a 4-D
convolution weight whose input channels grew (a model option that feeds the network more inputs,
such as the exemplar colorizer's correspondence) takes the source's kernels for its first input
channels and zeros for the new ones. The new inputs then start with no effect, so step 0 computes
exactly what the source computed, and training decides how much to use them. Any other difference
(a missing, extra or reshaped tensor) is an error: a fine-tune of another network is no fine-tune.
TrainConfig.init_modules limits the copy to some top-level submodules (e.g. ["transfer"]: the
exemplar colorizer's transfer sub-net, with a new colorization U-Net trained from its own init).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from refcolor.models.bundled import bundled_weights_path
from refcolor.models.loading import load_model


def widened(name: str, source: Tensor, target: Tensor) -> Tensor:
    """`source` fitted to `target`'s shape: equal shapes as is; a conv weight (out, in, kh, kw) with
    more input channels in `target` padded with zero kernels; anything else a ValueError."""
    if source.shape == target.shape:
        return source
    if (
        source.dim() == 4
        and target.dim() == 4
        and source.shape[0] == target.shape[0]
        and source.shape[2:] == target.shape[2:]
        and source.shape[1] < target.shape[1]
    ):
        out = torch.zeros_like(target)
        out[:, : source.shape[1]] = source.to(target.dtype)
        return out
    raise ValueError(
        f"train config: 'init_weights' tensor {name!r} must have shape {tuple(target.shape)} "
        f"(or be a conv weight with fewer input channels), got {tuple(source.shape)}"
    )


def load_initial_weights(model: nn.Module, source: str, kind: str, modules: list[str] | None = None) -> list[str]:
    """Copy `source`'s generator weights into `model` (module docstring), only those of the top-level
    submodules `modules` when given; returns the names of the widened tensors."""
    path = bundled_weights_path(kind) if source == "bundled" else source
    loaded = load_model(path, expected_kind=kind, device="cpu").model.state_dict()
    target = model.state_dict()
    if modules is not None:
        names = {name for name, _ in model.named_children()}
        unknown = sorted(set(modules) - names)
        if unknown:
            raise ValueError(f"train config: 'init_modules' must name submodules of {sorted(names)}, got {unknown}")
        keep = tuple(f"{m}." for m in modules)
        target = {k: v for k, v in target.items() if k.startswith(keep)}
        loaded = {k: v for k, v in loaded.items() if k.startswith(keep)}
    missing, extra = sorted(set(target) - set(loaded)), sorted(set(loaded) - set(target))
    if missing or extra:
        raise ValueError(
            f"train config: 'init_weights' {source!r} must hold the same tensors as the model; "
            f"missing {missing[:5]}, extra {extra[:5]}"
        )
    state, grown = {}, []
    for name, tensor in target.items():
        state[name] = widened(name, loaded[name], tensor)
        if state[name] is not loaded[name]:
            grown.append(name)
    model.load_state_dict(state, strict=modules is None)
    return grown


__all__ = ["load_initial_weights", "widened"]

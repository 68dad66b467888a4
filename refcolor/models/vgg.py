"""VGG19 feature extractor for the perceptual and style losses, defined here because torchvision
is not a dependency. The `features` Sequential has exactly torchvision's `vgg19().features` layout
(37 modules), so torchvision-format ImageNet weights (`features.N.weight/bias`) load unchanged.

Weights are looked up, in order: an explicit path (or URL), $REFCOLOR_VGG19_WEIGHTS, the torch hub
cache (`<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth`), and a download from
download.pytorch.org only when download=True. Files are read with weights_only=True: loading never
unpickles arbitrary objects. When nothing is found, WeightsUnavailableError is raised so a trainer
can switch the VGG terms off instead of crashing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
WEIGHTS_ENV_VAR = "REFCOLOR_VGG19_WEIGHTS"

# torchvision's configuration "E": conv widths, "M" = 2x2 max-pool.
_VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# SCFT (Lee et al. 2020, Eq. 9-10) takes phi_l at relu{l}_1, l = 1..5, for both terms.
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class WeightsUnavailableError(RuntimeError):
    """No VGG19 weights could be found (and downloading was not allowed or failed)."""


def _layer_indices() -> dict[str, int]:
    """Layer name ("relu3_2", "pool3", ...) -> index in `features`, following the config."""
    names, block, conv = {}, 1, 0
    index = 0
    for item in _VGG19_CONFIG:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


LAYER_INDEX = _layer_indices()


def _build_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG19_CONFIG:
        if isinstance(item, str):  # "M"
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            # Not in-place (torchvision uses inplace=True): the returned activations must not be
            # overwritten, and the memory saving is irrelevant for a frozen loss network.
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """Frozen VGG19 returning {layer name: activation} for images in [0, 1] (ImageNet normalisation
    is applied inside). The forward stops at the deepest requested layer.

    Constructed directly, the weights are random (for tests and shape checks); use
    `from_pretrained` for ImageNet weights.
    """

    def __init__(self, layers: Iterable[str] = PERCEPTUAL_LAYERS) -> None:
        super().__init__()
        self.layers = tuple(dict.fromkeys(layers))  # ordered, de-duplicated
        if not self.layers:
            raise ValueError("VGG19Features: 'layers' must name at least one layer")
        unknown = [name for name in self.layers if name not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"VGG19Features: unknown layers {unknown}; expected names like 'relu3_1' or 'pool2'")
        self.features = _build_features()
        self.mean: Tensor
        self.std: Tensor
        # Non-persistent: the state dict holds only torchvision's `features.*` keys.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._index_to_name = {LAYER_INDEX[name]: name for name in self.layers}
        self._last_index = max(self._index_to_name)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        # A loss network stays in eval mode even when a parent module calls .train().
        return super().train(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"VGG19Features: expected images (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out = {}
        for index in range(self._last_index + 1):
            x = self.features[index](x)
            if index in self._index_to_name:
                out[self._index_to_name[index]] = x
        return out

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a torchvision vgg19 state dict (`features.*` used, `classifier.*` ignored). Keys of
        a bare `vgg19().features` state dict ("0.weight", ...) are accepted too."""
        features = {k[len("features.") :]: v for k, v in state_dict.items() if k.startswith("features.")}
        if not features:
            features = {k: v for k, v in state_dict.items() if k.split(".")[0].isdigit()}
        try:
            self.features.load_state_dict(features, strict=True)
        except RuntimeError as error:
            raise ValueError(f"VGG19Features: not a torchvision VGG19 state dict ({error})") from None

    @classmethod
    def from_pretrained(
        cls,
        path_or_url: str | os.PathLike | None = None,
        *,
        layers: Iterable[str] = PERCEPTUAL_LAYERS,
        download: bool = False,
    ) -> VGG19Features:
        """ImageNet-pretrained VGG19 features.

        Args:
            path_or_url: a local torchvision-format file, or an http(s) URL (fetched only when
                download=True, cached in the torch hub directory). None: $REFCOLOR_VGG19_WEIGHTS,
                then the torch hub cache, then (download=True only) the torchvision URL.
            layers: the activations forward returns.
            download: allow a network download.

        Raises:
            WeightsUnavailableError: no file found and no download allowed (or the download failed).
            ValueError: the file exists but is not a readable VGG19 state dict.
        """
        model = cls(layers)
        model.load_torchvision_state_dict(_load_state_dict(path_or_url, download))
        return model


def _read_file(path: Path) -> Mapping[str, Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types: corrupt file, non-tensor pickles
        raise ValueError(f"VGG19Features: cannot read weights file {path}: {error}") from None
    if not isinstance(state_dict, Mapping):
        raise ValueError(  # a bad file's contents, not a bad argument type: ValueError
            f"VGG19Features: {path} holds a {type(state_dict).__name__}, not a state dict"
        )
    return state_dict


def _download(url: str) -> Mapping[str, Tensor]:
    try:
        # check_hash: torchvision file names carry a sha256 prefix, so a truncated or tampered file is refused.
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as error:
        raise WeightsUnavailableError(f"VGG19 weights: downloading {url} failed: {error}") from error


def _load_state_dict(path_or_url, download: bool) -> Mapping[str, Tensor]:
    cache_path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME
    if path_or_url is not None:
        text = os.fspath(path_or_url)
        if text.startswith(("http://", "https://")):
            cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(text)
            if cached.is_file():
                return _read_file(cached)
            if download:
                return _download(text)
            raise WeightsUnavailableError(
                f"VGG19 weights: {text} is not in the torch hub cache ({cached}) and download=False"
            )
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"VGG19 weights: no file at {path}")
        return _read_file(path)

    env_value = os.environ.get(WEIGHTS_ENV_VAR)
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            # Named explicitly but missing: say so rather than silently falling back.
            raise WeightsUnavailableError(f"VGG19 weights: ${WEIGHTS_ENV_VAR} points to {path}, which is not a file")
        return _read_file(path)
    if cache_path.is_file():
        return _read_file(cache_path)
    if download:
        return _download(VGG19_URL)
    raise WeightsUnavailableError(
        f"VGG19 weights not found: set ${WEIGHTS_ENV_VAR} to a torchvision vgg19 state dict "
        f"({VGG19_FILENAME}), place it at {cache_path}, or pass download=True to fetch {VGG19_URL}"
    )


__all__ = [
    "LAYER_INDEX",
    "PERCEPTUAL_LAYERS",
    "STYLE_LAYERS",
    "VGG19_URL",
    "WEIGHTS_ENV_VAR",
    "VGG19Features",
    "WeightsUnavailableError",
]

"""Snippet transforms for frozen video backbones, in plain torch ops (CPU or GPU: they follow the input's device).

Layout: a clip is float ``[3, L, H, W]`` (channels first, then time), values in [0, 1] until :func:`normalise`.
Multi-crop output is ``[C, 3, L, s, s]`` with crops in the order :data:`CROP_ORDERS` names — torchvision's
``FiveCrop`` / ``TenCrop`` order, so features match extractors built on torchvision.

Recipes (docs/design.md, Extraction):

- RTFM I3D: ``SnippetTransform(short_side=256, crop_size=224, crops="ten", mean=0.5, std=0.5)`` (short side 256
  keeping aspect, TenCrop 224, pixels scaled to [-1, 1]).
- C3D: ``SnippetTransform(short_side=None, resize=(128, 171), crop_size=112, crops="center" or "ten", ...)``.

Resizing is bilinear (``align_corners=False``) with ``antialias=True`` by default: for downscaling this matches PIL
and ``torchvision.transforms.Resize`` (antialiased since torchvision 0.17); ``antialias=False`` matches OpenCV
``INTER_LINEAR`` / torch's plain bilinear, which alias when shrinking 576 -> 256.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vadmil.errors import VadmilError, check_choice

_FIVE = ["top_left", "top_right", "bottom_left", "bottom_right", "center"]
CROP_ORDERS: dict[str, list[str]] = {
    "center": ["center"],
    "five": list(_FIVE),
    "ten": _FIVE + [f"flipped_{name}" for name in _FIVE],
}
"""Names of the crops :func:`crop` returns, in order. ``flipped_x`` is crop ``x`` of the horizontally flipped clip
(so ``flipped_top_left`` is the mirror image of ``top_right``)."""


def to_float_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames ``[L, H, W, 3]`` (numpy or torch) to float32 ``[3, L, H, W]`` in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise VadmilError(
            f"expected uint8 frames [L, H, W, 3], got {x.dtype} {tuple(x.shape)}; pass frames as decoded"
        )
    return x.permute(3, 0, 1, 2).to(torch.float32).div_(255.0)


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_to(clip: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Resize ``[..., H, W]`` (e.g. ``[3, L, H, W]``) to exactly ``size = (h, w)``, bilinear."""
    h, w = _size2(size)
    if h < 1 or w < 1:
        raise VadmilError(f"resize size must be positive, got {(h, w)}")
    if tuple(clip.shape[-2:]) == (h, w):
        return clip
    lead = clip.shape[:-2]
    x = clip.reshape(1, -1, *clip.shape[-2:])  # every channel/frame is an independent plane
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    return y.reshape(*lead, h, w)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output ``(h, w)`` of :func:`resize_short_side`: short side ``size``, long side rounded to keep the aspect."""
    if height <= width:
        return size, max(1, int(round(width * size / height)))
    return max(1, int(round(height * size / width))), size


def resize_short_side(clip: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Resize ``[..., H, W]`` so that its short side is ``size``, keeping the aspect (576x768 -> 256x341)."""
    return resize_to(clip, short_side_size(clip.shape[-2], clip.shape[-1], size), antialias=antialias)


def _corners(h: int, w: int, ch: int, cw: int) -> list[tuple[int, int]]:
    """Top-left (y, x) of the five crops, in FiveCrop order; the centre rounds like torchvision's center_crop."""
    return [
        (0, 0),
        (0, w - cw),
        (h - ch, 0),
        (h - ch, w - cw),
        (int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))),
    ]


def crop(clip: torch.Tensor, size: int | tuple[int, int], mode: str = "center") -> torch.Tensor:
    """Spatial crops of ``[3, L, H, W]`` (any leading dims) stacked to ``[C, 3, L, s, s]``, in ``CROP_ORDERS[mode]``."""
    check_choice("crop mode", mode, CROP_ORDERS)
    ch, cw = _size2(size)
    h, w = clip.shape[-2:]
    if ch > h or cw > w:
        raise VadmilError(
            f"crop {ch}x{cw} is larger than the resized frame {h}x{w}; resize to at least the crop size"
        )
    boxes = _corners(h, w, ch, cw)
    if mode == "center":
        boxes = boxes[4:]
    out = [clip[..., y : y + ch, x : x + cw] for y, x in boxes]
    if mode == "ten":
        flipped = clip.flip(-1)
        out += [flipped[..., y : y + ch, x : x + cw] for y, x in boxes]
    return torch.stack(out)


def _floats(value: float | Sequence[float]) -> float | list[float]:
    """A number or a sequence of numbers (a list, tuple, tensor or OmegaConf ListConfig) as plain floats."""
    if isinstance(value, int | float):
        return float(value)
    return [float(v) for v in value]


def normalise(
    clips: torch.Tensor, mean: float | Sequence[float], std: float | Sequence[float], inplace: bool = False
) -> torch.Tensor:
    """``(clips - mean) / std`` per colour channel, in [0, 1] units; the channel dim is ``-4`` (``[..., 3, L, H, W]``).

    RTFM's [-1, 1] scaling is ``mean=0.5, std=0.5``; Kinetics-style ``mean 114.75, std 57.375`` on 0-255 pixels
    is ``mean=0.45, std=0.225`` here.
    """
    mean, std = _floats(mean), _floats(std)
    m = torch.tensor(mean, dtype=clips.dtype, device=clips.device).reshape(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=clips.dtype, device=clips.device).reshape(-1, 1, 1, 1)
    if m.shape[0] not in (1, 3) or s.shape[0] not in (1, 3):
        raise VadmilError(f"mean and std must be one value or three (R, G, B), got mean={mean!r} std={std!r}")
    if bool((s <= 0).any()):
        raise VadmilError(f"std must be positive, got {std!r}")
    if inplace:
        return clips.sub_(m).div_(s)
    return (clips - m) / s


class SnippetTransform:
    """uint8 snippet ``[L, H, W, 3]`` -> float ``[C, 3, L, s, s]``: resize, normalise, crop.

    ``resize=(h, w)`` stretches to a fixed size (the C3D recipe's 128x171) instead of resizing the short side to
    ``short_side``. Normalising before cropping gives the same values as after (both act per pixel) for fewer
    pixels. Runs on the input's device: pass a CUDA tensor to transform on the GPU.
    """

    def __init__(
        self,
        short_side: int | None = 256,
        crop_size: int = 224,
        crops: str = "ten",
        mean: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 0.5,
        resize: tuple[int, int] | None = None,
        antialias: bool = True,
    ):
        check_choice("crops", crops, CROP_ORDERS)
        if short_side is None and resize is None:
            raise VadmilError("give short_side or resize (h, w) for the snippet transform")
        self.short_side = short_side
        self.crop_size = crop_size
        self.crops = crops
        self.mean = _floats(mean)
        self.std = _floats(std)
        self.resize = tuple(resize) if resize is not None else None
        self.antialias = antialias

    @property
    def n_crops(self) -> int:
        return len(CROP_ORDERS[self.crops])

    def __call__(self, snippet: np.ndarray | torch.Tensor) -> torch.Tensor:
        clip = to_float_clip(snippet)
        if self.resize is not None:
            clip = resize_to(clip, self.resize, antialias=self.antialias)
        else:
            clip = resize_short_side(clip, self.short_side, antialias=self.antialias)
        clip = normalise(clip, self.mean, self.std, inplace=True)
        return crop(clip, self.crop_size, self.crops)

    def config(self) -> dict:
        """Settings to record with the features (extraction must be reproducible)."""
        return {
            "short_side": self.short_side,
            "resize": list(self.resize) if self.resize is not None else None,
            "crop_size": self.crop_size,
            "crops": self.crops,
            "crop_order": CROP_ORDERS[self.crops],
            "mean": self.mean,
            "std": self.std,
            "antialias": self.antialias,
            "interpolation": "bilinear",
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "crop_order")
        return f"SnippetTransform({args})"

"""The frozen-backbone contract shared by every feature extractor."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vadmil.errors import VadmilError

RANDOM_INIT = "random-init"  # weights_sha256 of a backbone built with random_init=true
RANDOM_INIT_SEED = 0  # random-init backbones are seeded, so their features are reproducible


class FrozenBackbone(nn.Module):
    """A frozen feature extractor. forward(clips [N, 3, T, H, W] float, already normalised) -> features [N, D].

    Attributes (recorded with every feature store):

    - ``name``: the backbone's name (the architecture, e.g. ``i3d_r50``, ``c3d``).
    - ``feature_dim``: D.
    - ``clip_len`` / ``crop_size``: the snippet length (frames) and square crop side the extractor should feed.
      By default the architecture's native values; a backbone with adaptive pooling accepts other sizes.
    - ``mean`` / ``std``: per-channel RGB normalisation on pixel values scaled to [0, 1], applied by the extractor
      before ``forward``: ``(x / 255 - mean) / std``.
    - ``weights_sha256``: sha256 of the loaded weights file, or ``"random-init"``.
    - ``preset``: the paper recipe (preprocessing) its features are known by, from its config's ``preset`` node
      (:mod:`vadmil.extract.presets`); empty when it has none.

    The module stays in eval mode and holds no trainable parameter: ``train(True)`` is ignored, so a parent
    module switching to training mode never turns dropout or batch-norm updates on here.
    """

    name: str
    feature_dim: int
    clip_len: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str

    def __init__(self) -> None:
        super().__init__()

    def freeze(self) -> FrozenBackbone:
        """Eval mode and no gradients; call at the end of a subclass's ``__init__``."""
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:  # frozen: always eval
        return super().train(False)

    def check_clips(self, clips: torch.Tensor) -> None:
        """Raise a one-line error unless ``clips`` is a float tensor [N, 3, T, H, W]."""
        if clips.ndim != 5 or clips.shape[1] != 3 or not clips.is_floating_point():
            raise VadmilError(
                f"backbone {self.name} takes float clips [N, 3, T, H, W], got {clips.dtype} {list(clips.shape)}; "
                "decode RGB frames, stack them as [N, 3, T, H, W] and normalise with the backbone's mean/std"
            )

    def describe(self) -> dict[str, Any]:
        """The settings to record beside the features."""
        return {
            "name": self.name,
            "feature_dim": int(self.feature_dim),
            "clip_len": int(self.clip_len),
            "crop_size": int(self.crop_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "weights_sha256": self.weights_sha256,
        }

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, feature_dim={self.feature_dim}, clip_len={self.clip_len}, "
            f"crop_size={self.crop_size}, weights_sha256={self.weights_sha256[:12]}"
        )


def as_triple(value: Any, what: str, backbone: str) -> tuple[float, float, float]:
    """A per-channel value as three floats (a single number is repeated)."""
    try:
        values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or (what == "std" and min(values) <= 0):
        raise VadmilError(
            f"backbone {backbone}: {what}={value!r} is not three RGB values"
            + (" > 0" if what == "std" else "")
            + f"; set backbone.{what}=[r, g, b] (on pixel values scaled to [0, 1])"
        )
    return (values[0], values[1], values[2])

"""PyTorchVideo Kinetics-400 architectures as frozen extractors of their pooled (pre-classifier) feature.

Models are built with ``pytorchvideo.models.hub.<arch>(pretrained=False)`` and filled from a local weights file
(the zoo's ``.pyth`` checkpoints load as they are); nothing is downloaded. Surgery, the same for every arch:

- ``head = model.blocks[-1]; head.proj = nn.Identity(); head.activation = None`` - the feature is the pooled
  vector before the classifier (clearing ``activation`` matters: X3D and R(2+1)D heads end in a softmax);
- the fixed ``AvgPool3d`` of the head becomes ``nn.AdaptiveAvgPool3d(1)`` (identical at the native clip size),
  so shorter or longer clips and smaller crops work: X3D's sits at ``head.pool.pool``, SlowFast's per-pathway
  pools at ``model.blocks[-2].pool``, the other ResNets' at ``head.pool``.

The projection's tensors in a weights file are ignored (so zoo checkpoints and files saved from a backbone
both load); every other tensor must fit exactly.

SlowFast takes the clip as its fast pathway and builds the slow pathway inside ``forward`` by sampling
``T // 4`` frames (alpha = 4) at ``torch.linspace(0, T - 1, T // 4)``, as PyTorchVideo's hub example does
(``PackPathway``); the clip length must be a multiple of 4.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from vadmil.backbones.base import RANDOM_INIT, RANDOM_INIT_SEED, FrozenBackbone, as_triple
from vadmil.backbones.weights import load_weights, resolve_weights
from vadmil.errors import VadmilError, check_choice

HUB_MEAN = (0.45, 0.45, 0.45)  # PyTorchVideo Kinetics models: RGB in [0, 1]
HUB_STD = (0.225, 0.225, 0.225)
SLOWFAST_ALPHA = 4


@dataclass(frozen=True)
class Arch:
    """Native settings of a zoo model (Kinetics-400): clip_len frames taken every frame_stride frames, crop_size
    the square training crop its fixed head pool was built for (the zoo's test-time recipe resizes the short side
    to 256, or 182 for X3D-XS/S, and reads larger crops: fully convolutional testing)."""

    feature_dim: int
    clip_len: int
    frame_stride: int
    crop_size: int


ARCHS: dict[str, Arch] = {
    "c2d_r50": Arch(2048, 8, 8, 224),
    "i3d_r50": Arch(2048, 8, 8, 224),
    "slow_r50": Arch(2048, 8, 8, 224),
    "slowfast_r50": Arch(2304, 32, 2, 224),  # fast pathway 32x2; slow pathway 8x8 built inside forward
    "x3d_xs": Arch(2048, 4, 12, 160),
    "x3d_s": Arch(2048, 13, 6, 160),
    "x3d_m": Arch(2048, 16, 5, 224),
    "r2plus1d_r50": Arch(2048, 16, 4, 224),
    "csn_r101": Arch(2048, 32, 2, 224),
}


def _hub():
    with warnings.catch_warnings():  # pytorchvideo uses torch.jit.script at import
        warnings.filterwarnings("ignore", category=FutureWarning)
        import pytorchvideo.models.hub as hub
    return hub


def build_hub_model(arch: str, seed: int | None = RANDOM_INIT_SEED) -> nn.Module:
    """The unmodified hub model, randomly initialised from ``seed`` (global RNG state untouched); None: unseeded."""
    builder = getattr(_hub(), arch)
    if seed is None:
        return builder(pretrained=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(pretrained=False)


def pooled_feature_surgery(model: nn.Module, arch: str) -> str:
    """Strip the classifier (in place) so the model returns its pooled feature; returns the projection's key
    prefix in the original state dict."""
    head = model.blocks[-1]
    head.proj = nn.Identity()
    head.activation = None
    if arch.startswith("x3d"):
        head.pool.pool = nn.AdaptiveAvgPool3d(1)
    elif arch.startswith("slowfast"):
        pools = model.blocks[-2].pool
        model.blocks[-2].pool = nn.ModuleList(nn.AdaptiveAvgPool3d(1) for _ in pools)
    else:
        head.pool = nn.AdaptiveAvgPool3d(1)
    return f"blocks.{len(model.blocks) - 1}.proj."


class PyTorchVideoBackbone(FrozenBackbone):
    """A PyTorchVideo zoo architecture (see ``ARCHS``) returning its pooled feature [N, feature_dim].

    Args:
        arch: hub builder name: c2d_r50, i3d_r50, slow_r50, slowfast_r50, x3d_xs, x3d_s, x3d_m, r2plus1d_r50,
            csn_r101.
        weights: local weights file (``.pyth`` zoo checkpoint, plain state dict or Lightning checkpoint).
        random_init: build with a seeded random initialisation instead (smoke tests; recorded as "random-init").
        mean, std: RGB normalisation on [0, 1] pixels the weights expect (hub: 0.45 / 0.225).
        clip_len, crop_size: the snippet the extractor should feed; default: the arch's native values.
        channels_last: run in ``torch.channels_last_3d`` memory format (never slower on CPU, often faster).
        preset: the paper recipe this backbone's features are known by (see :mod:`vadmil.extract.presets`; the
            extractor reads it from the config, the module keeps it for reference).
    """

    def __init__(
        self,
        arch: str,
        weights: str | None = None,
        random_init: bool = False,
        mean=HUB_MEAN,
        std=HUB_STD,
        clip_len: int | None = None,
        crop_size: int | None = None,
        channels_last: bool = True,
        preset: dict | None = None,
    ) -> None:
        super().__init__()
        self.preset = dict(preset or {})
        check_choice("PyTorchVideo arch (backbone.arch)", arch, ARCHS)
        spec = ARCHS[arch]
        self.name = self.arch = arch
        self.feature_dim = spec.feature_dim
        self.clip_len = int(clip_len) if clip_len is not None else spec.clip_len
        self.crop_size = int(crop_size) if crop_size is not None else spec.crop_size
        self.native_clip_len, self.native_crop_size = spec.clip_len, spec.crop_size
        self.frame_stride = spec.frame_stride  # the zoo model's sampling stride (informational)
        self.mean, self.std = as_triple(mean, "mean", arch), as_triple(std, "std", arch)
        self.channels_last = bool(channels_last)
        self.is_slowfast = arch.startswith("slowfast")
        if self.clip_len < 1 or self.crop_size < 32:
            raise VadmilError(
                f"backbone {arch}: clip_len={self.clip_len}, crop_size={self.crop_size} are too small; "
                "set backbone.clip_len >= 1 and backbone.crop_size >= 32 (or leave them null for the native sizes)"
            )
        if self.is_slowfast:
            self._check_slowfast_len(self.clip_len, "backbone.clip_len")
        path = resolve_weights(weights, random_init, arch)

        model = build_hub_model(arch)
        proj_prefix = pooled_feature_surgery(model, arch)
        self.weights_sha256 = RANDOM_INIT
        if path is not None:
            self.weights_sha256 = load_weights(model, path, name=arch, ignore_prefixes=(proj_prefix,))
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.model = model
        self.freeze()

    def _check_slowfast_len(self, frames: int, where: str) -> None:
        if frames < SLOWFAST_ALPHA or frames % SLOWFAST_ALPHA:
            raise VadmilError(
                f"backbone {self.arch} needs clips whose length is a multiple of {SLOWFAST_ALPHA} (its slow pathway "
                f"takes every {SLOWFAST_ALPHA}th frame), got {frames} frames in {where}; use 16 or 32 frames"
            )

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.check_clips(clips)
        if self.is_slowfast:
            frames = clips.shape[2]
            self._check_slowfast_len(frames, "the clips")
            index = torch.linspace(0, frames - 1, frames // SLOWFAST_ALPHA, device=clips.device).long()
            slow = clips.index_select(2, index)
            pathways = [
                self._layout(slow),
                self._layout(clips),
            ]  # a fresh list each call: SlowFast mutates it
            features = self.model(pathways)
        else:
            features = self.model(self._layout(clips))
        return features.reshape(clips.shape[0], -1)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "arch": self.arch,
            "native_clip_len": self.native_clip_len,
            "native_crop_size": self.native_crop_size,
            "native_frame_stride": self.frame_stride,
        }

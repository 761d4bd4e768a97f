"""VGGish (Hershey et al., ICASSP 2017; the AudioSet audio embedding), defined in vadmil like the C3D backbone.

Architecture (as the TensorFlow release and its PyTorch port torchvggish, github.com/harritaylor/torchvggish):
input log-mel patches [N, 1, 96, 64] (96 frames of 10 ms = 0.96 s, 64 mel bands); Conv2d k3 pad1 + ReLU layers
64, pool, 128, pool, 256, 256, pool, 512, 512, pool (max pools 2x2) → [N, 512, 6, 4], flattened channels-last
(the TensorFlow order, so ported weights match) → Linear 12288→4096 + ReLU → 4096→4096 + ReLU → 4096→128 + ReLU.
State-dict keys follow torchvggish (``features.{0,3,6,8,11,13}``, ``embeddings.{0,2,4}``), so its weights file
loads strictly; its PCA/quantisation post-processor (``pproc.*``) is not applied (the raw 128-d embedding is
stored) and is ignored when present in the file.

``width`` scales every layer (1.0 is VGGish; smaller widths make tiny random-init nets for tests and the demo,
recorded in the store's recipe). Weights come only from a local file (sha256 recorded) or a seeded random init.
"""

from __future__ import annotations

import torch
from torch import nn

from vadmil.backbones.base import RANDOM_INIT, RANDOM_INIT_SEED
from vadmil.backbones.weights import load_weights, resolve_weights
from vadmil.errors import VadmilError

PATCH_FRAMES, MEL_BANDS, EMBEDDING = 96, 64, 128
_CONVS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGishNet(nn.Module):
    """The network: log-mel patches [N, 1, 96, 64] → embeddings [N, 128] (scaled by ``width``, last layer kept)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        layers, cin = [], 1
        for v in _CONVS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = max(1, round(v * width))
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        hidden = max(1, round(4096 * width))
        flat = cin * (PATCH_FRAMES // 16) * (MEL_BANDS // 16)
        self.embeddings = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(True), nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, EMBEDDING), nn.ReLU(True),
        )  # fmt: skip

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)  # [N, C, 6, 4]
        return self.embeddings(x.permute(0, 2, 3, 1).flatten(1))  # channels-last flattening, as TensorFlow


class VGGishBackbone(nn.Module):
    """The frozen audio embedder: log-mel patches [N, 96, 64] → [N, 128]; ``name``, ``feature_dim``,
    ``weights_sha256`` as the video backbones."""

    def __init__(self, weights: str | None = None, random_init: bool = False, width: float = 1.0):
        super().__init__()
        if not 0 < float(width) <= 1:
            raise VadmilError(f"audio.net.width must be in (0, 1] (1 is VGGish), got {width}")
        self.width = float(width)
        self.name = "vggish" if self.width == 1 else f"vggish_w{self.width:g}"
        self.feature_dim = EMBEDDING
        path = resolve_weights(weights, random_init, "vggish")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            net = VGGishNet(self.width)
        self.weights_sha256 = RANDOM_INIT
        if path is not None:  # strict: a file of another width does not fit
            self.weights_sha256 = load_weights(net, path, name="vggish", ignore_prefixes=("pproc.",))
        self.net = net
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGGishBackbone:  # frozen: always eval
        return super().train(False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.ndim != 3 or tuple(patches.shape[1:]) != (PATCH_FRAMES, MEL_BANDS):
            raise VadmilError(
                f"vggish takes log-mel patches [N, {PATCH_FRAMES}, {MEL_BANDS}], got {list(patches.shape)}"
            )
        return self.net(patches[:, None].float())

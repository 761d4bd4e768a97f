"""C3D (Tran et al., ICCV 2015), Sports-1M, as circulated for PyTorch; the feature is post-ReLU fc6 (4096-d).

``C3D`` reproduces the circulated module exactly (layer names conv1 ... fc8, 22 tensors, 79,991,015
parameters), so the Sports-1M state dict loads strictly. Input: [N, 3, 16, 112, 112].

Preprocessing (the Sports-1M training recipe, made explicit; the extractor applies it): resize frames to
128x171 (H x W), centre crop 112x112, 16-frame snippets, pixel values on 0-255 minus the Sports-1M mean, no
scaling. The original recipe subtracts a mean *cube* (16x128x171 per channel); its per-channel averages are
B 90.2516, G 97.6570, R 101.4083 (0-255). In vadmil's convention (RGB, pixels scaled to [0, 1],
``(x - mean) / std``) that is mean = (101.4083, 97.6570, 90.2516) / 255 = (0.39768, 0.38297, 0.35393) and
std = 1 / 255 = 0.0039216, so the network sees ``255 x - mean_255``, as in Caffe. The Caffe model was trained
on BGR frames (OpenCV); ``channel_order="bgr"`` reverses the normalised channels before the network, "rgb"
(default) feeds them as they are, as the common PyTorch ports do. ``describe()`` records the choice.
"""

from __future__ import annotations

import torch
from torch import nn

from vadmil.backbones.base import RANDOM_INIT, RANDOM_INIT_SEED, FrozenBackbone, as_triple
from vadmil.backbones.weights import load_weights, resolve_weights
from vadmil.errors import VadmilError

SPORTS1M_MEAN = (101.4083 / 255, 97.6570 / 255, 90.2516 / 255)  # RGB, [0, 1] terms
SPORTS1M_STD = (1 / 255, 1 / 255, 1 / 255)  # no scaling of the 0-255 values


class C3D(nn.Module):
    """The C3D network; ``forward`` returns fc8 logits (487 Sports-1M classes), ``features`` post-ReLU fc6."""

    def __init__(self, num_classes: int = 487) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, kernel_size=3, padding=1)

        self.conv1 = conv(3, 64)
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = conv(64, 128)
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv3a = conv(128, 256)
        self.conv3b = conv(256, 256)
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv4a = conv(256, 512)
        self.conv4b = conv(512, 512)
        self.pool4 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv5a = conv(512, 512)
        self.conv5b = conv(512, 512)
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(p=0.5)
        self.relu = nn.ReLU()

    def _conv_features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool2(r(self.conv2(x)))
        x = self.pool3(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool4(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        return x.flatten(1)  # 512 x 1 x 4 x 4 = 8192 at 16 x 112 x 112

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Post-ReLU fc6 [N, 4096] (dropout applies in training mode only)."""
        return self.relu(self.fc6(self._conv_features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.features(x))
        x = self.dropout(self.relu(self.fc7(x)))
        return self.fc8(x)


class C3DBackbone(FrozenBackbone):
    """C3D's post-ReLU fc6 feature [N, 4096]; clips [N, 3, 16, 112, 112] normalised with the Sports-1M mean.

    C3D has fixed-size fully connected layers: clips must be exactly 16 x 112 x 112.
    """

    def __init__(
        self,
        weights: str | None = None,
        random_init: bool = False,
        mean=SPORTS1M_MEAN,
        std=SPORTS1M_STD,
        channel_order: str = "rgb",
        preset: dict | None = None,  # the paper recipe (vadmil.extract.presets), kept for reference
    ) -> None:
        super().__init__()
        self.preset = dict(preset or {})
        self.name = "c3d"
        self.feature_dim, self.clip_len, self.crop_size = 4096, 16, 112
        self.mean, self.std = as_triple(mean, "mean", "c3d"), as_triple(std, "std", "c3d")
        if channel_order not in ("rgb", "bgr"):
            raise VadmilError(
                f"backbone c3d: channel_order={channel_order!r} is neither 'rgb' nor 'bgr'; "
                "set backbone.channel_order=rgb (as the PyTorch ports) or bgr (as the Caffe original)"
            )
        self.channel_order = channel_order
        path = resolve_weights(weights, random_init, "c3d")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = C3D()
        self.weights_sha256 = RANDOM_INIT
        if path is not None:
            self.weights_sha256 = load_weights(model, path, name="c3d")
        self.model = model
        self.freeze()

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.check_clips(clips)
        if tuple(clips.shape[2:]) != (16, 112, 112):
            raise VadmilError(
                f"backbone c3d takes 16 x 112 x 112 clips (fixed fc6 input), got {list(clips.shape[2:])}; "
                "use clip_len 16 and 112 crops (frames resized to 128x171)"
            )
        if self.channel_order == "bgr":
            clips = clips.flip(1)
        return self.model.features(clips)

    def describe(self) -> dict:
        return {**super().describe(), "channel_order": self.channel_order, "resize": [128, 171]}

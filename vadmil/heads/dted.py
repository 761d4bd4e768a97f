"""DTED, Kamoona et al., ESWA 2023 — reconstructed from the paper's description (no official code exists).

The paper treats a bag's instances as a sequence and passes them through a two-layer temporal convolutional
encoder–decoder shared by normal and abnormal bags, one score per instance. The architecture follows ED-TCN
(Lea et al., CVPR 2017), which the description matches; the choices below are ours and are config options:

- encoder: per layer Conv1d(k, same padding) → activation → dropout → max-pool ×2 over time;
- decoder: per layer ×2 nearest upsampling → Conv1d(k) → activation → dropout, channels mirrored;
- activation ``norm_relu`` (ED-TCN's ReLU divided by the channel-wise max at each step) or ``relu``;
- kernel 3 and channels (256, 128): ED-TCN's 25-step kernels were set for 1.5-fps frame features; over 32
  segments, 3 keeps each encoder step's receptive field a small part of the bag;
- ``skip``: U-Net-style additive skips from each encoder layer to the decoder layer of the same resolution
  (not in ED-TCN): without them the ×4 down- and upsampling blurs where in the bag an anomaly is;
- per-instance Linear → sigmoid; bags are pooled by the losses (max for the MIL ranking term).

Pooling uses ceil mode and decoding cuts back to each layer's input length, so any T ≥ 1 works and padding
never changes a video's scores.
"""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import MaskedConv1d, full_mask, masked_max_pool, upsample_to

ACTIVATIONS = ("norm_relu", "relu")


def _activate(x: torch.Tensor, kind: str) -> torch.Tensor:
    """ReLU, or ED-TCN's normalised ReLU: relu(x) / (max over channels of relu(x) + 1e-5). x [N, C, T]."""
    x = torch.relu(x)
    return x / (x.amax(dim=1, keepdim=True) + 1e-5) if kind == "norm_relu" else x


class DTEDHead(nn.Module):
    """Temporal convolutional encoder–decoder over a bag's instances (see the module docstring).

    Args:
        in_dim: feature dimension D, taken from the feature store.
        channels: encoder channels per layer (the decoder mirrors them).
    Shapes: features [N, T, D], mask [N, T] → scores, logits [N, T].
    """

    def __init__(
        self,
        in_dim: int,
        channels: tuple[int, ...] = (256, 128),
        kernel_size: int = 3,
        dropout: float = 0.3,
        activation: str = "norm_relu",
        skip: bool = True,
    ):
        super().__init__()
        check_choice("DTED activation", activation, ACTIVATIONS)
        channels = tuple(channels)
        widths = (in_dim, *channels)
        self.encoder = nn.ModuleList(
            MaskedConv1d(a, b, kernel_size) for a, b in zip(widths, widths[1:], strict=False)
        )
        # ED-TCN's decoder: layer i outputs the width of encoder layer L-i (e.g. 128 → 128 → 256).
        mirrored = channels[::-1]
        self.decoder = nn.ModuleList(
            MaskedConv1d(a, b, kernel_size)
            for a, b in zip((mirrored[0], *mirrored[:-1]), mirrored, strict=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.activation, self.skip = activation, skip
        self.classifier = nn.Linear(channels[0], 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        mask = full_mask(features, mask)
        x, skips = features.transpose(1, 2), []
        for conv in self.encoder:
            x = self.dropout(_activate(conv(x, mask), self.activation))
            skips.append((x, mask))
            x, mask = masked_max_pool(x, mask)
        for conv, (encoded, mask) in zip(self.decoder, reversed(skips), strict=True):
            x = self.dropout(_activate(conv(upsample_to(x, mask.shape[1]), mask), self.activation))
            if self.skip:
                x = x + encoded
        logits = self.classifier(x.transpose(1, 2)).squeeze(-1)
        return HeadOutput(scores=torch.sigmoid(logits), logits=logits)

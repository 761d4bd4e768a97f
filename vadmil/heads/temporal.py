"""Masked temporal building blocks shared by the heads.

Test videos are scored in padded batches, so every temporal operation here ignores padded snippets: a video's
scores are the same whether it is scored alone or next to a longer one (tests check this for every head).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded steps of a channels-first sequence: x [N, C, T], mask [N, T] → [N, C, T].

    A "same"-padded convolution of a zeroed sequence equals the convolution of the unpadded video.
    """
    return x if mask is None else x * mask[:, None, :].to(x.dtype)


def full_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` as bool, or all-True [N, T] for features x [N, T, D]."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return mask.bool()


class MaskedConv1d(nn.Conv1d):
    """A "same"-padded Conv1d over [N, C, T] that sees zeros instead of padded steps."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True
    ):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for same padding, got {kernel_size}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size // 2),
            bias=bias,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(zero_padding(x, mask))


def masked_max_pool(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool by 2 over time, ignoring padded steps: x [N, C, T], mask [N, T] → [N, C, ⌈T/2⌉], [N, ⌈T/2⌉].

    ``ceil_mode`` keeps an odd video's last step (a lone window), so a video's pooled values do not depend on
    how much padding follows it.
    """
    filled = x.masked_fill(~mask[:, None, :], float("-inf"))
    pooled = F.max_pool1d(filled, kernel_size=2, stride=2, ceil_mode=True)
    pooled_mask = F.max_pool1d(mask[:, None, :].float(), kernel_size=2, stride=2, ceil_mode=True)[:, 0] > 0
    return pooled.masked_fill(~pooled_mask[:, None, :], 0.0), pooled_mask


def upsample_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Nearest-neighbour ×2 upsampling, cut to ``length`` steps: [N, C, T'] → [N, C, length]."""
    return x.repeat_interleave(2, dim=-1)[..., :length]

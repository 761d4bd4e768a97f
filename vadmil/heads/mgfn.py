"""MGFN, Chen et al., AAAI 2023: feature amplification, glance (self-attention) and focus (convolution) blocks.

Follows the official code (github.com/carolchenyx/MGFN, ``models/mgfn.py``, ``utils/utils.py``):

- **Feature amplification (FAM).** Each snippet's L2 norm ‖x_t‖ is a second input: tokens =
  Conv1d(D→d₀, k3)(x) + ``magnitude_ratio`` · Conv1d(1→d₀, k3)(‖x‖) (the code's ``mag_ratio`` 0.1).
- **Stages** of widths ``dims`` (64, 128, 1024) and depths (3, 3, 2), of block types glance, focus, focus. Each
  layer: x += Conv1d(d, d, k3)(x) ("short-cut convolution"); x += block(x); x += FeedForward(x). Between
  stages: channel LayerNorm → Conv1d(1×1) to the next width.
- **Glance block**: channel LayerNorm → multi-head softmax self-attention over all snippets of the video
  (heads = width // 64, 64 channels each) → Conv1d(1×1).
- **Focus block**: BatchNorm1d → Conv1d(1×1, no bias) to heads·64 channels → a depth-wise temporal Conv1d
  (kernel 5) with one kernel per head, shared by that head's channels → Conv1d(1×1).
- **Output**: LayerNorm over the last width → Linear → sigmoid. The magnitudes that MGFN's top-k selection and
  magnitude-contrastive loss use are the L2 norms of these LayerNorm'd features (``features``).

Every temporal operation ignores padded snippets (zeroed before convolutions, masked as attention keys), so a
video scores the same alone or in a padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vadmil.errors import VadmilError, check_choice
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import MaskedConv1d, full_mask, zero_padding

BLOCKS = ("glance", "focus")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of [N, C, T] at each step, as the code's: (x − μ) / (σ + eps) · g + b."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, channels, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.var(dim=1, unbiased=False, keepdim=True).sqrt()
        return (x - x.mean(dim=1, keepdim=True)) / (std + self.eps) * self.g + self.b


class GlanceBlock(nn.Module):
    """Multi-head self-attention over a video's real snippets. Shapes: x [N, C, T], mask [N, T] → [N, C, T]."""

    def __init__(self, dim: int, heads: int, head_dim: int = 64):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = ChannelLayerNorm(dim)
        self.qkv = nn.Conv1d(dim, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv1d(heads * head_dim, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, _, t = x.shape
        q, k, v = (
            part.reshape(n, self.heads, self.head_dim, t).transpose(2, 3)  # [N, H, T, d]
            for part in self.qkv(self.norm(x)).chunk(3, dim=1)
        )
        sim = (q * self.head_dim**-0.5) @ k.transpose(2, 3)  # [N, H, T, T]
        sim = sim.masked_fill(~mask[:, None, None, :], float("-inf"))  # padded snippets are no keys
        attended = sim.softmax(dim=-1) @ v  # [N, H, T, d]
        return self.out(attended.transpose(2, 3).reshape(n, self.heads * self.head_dim, t))


class FocusBlock(nn.Module):
    """The code's "self-attentional convolution": a per-head depth-wise temporal convolution.

    Channel j of the heads·head_dim value channels is convolved with head (j mod heads)'s kernel, as the code's
    ``rearrange('b (c h) t -> (b c) h t')`` followed by ``Conv1d(heads, heads, k, groups=heads)`` does.
    Shapes: x [N, C, T], mask [N, T] → [N, C, T].
    """

    def __init__(self, dim: int, heads: int, head_dim: int = 64, kernel_size: int = 5):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.BatchNorm1d(dim)
        self.value = nn.Conv1d(dim, heads * head_dim, 1, bias=False)
        if kernel_size % 2 == 0:
            raise VadmilError(f"the focus block's kernel must be odd (same padding), got {kernel_size}")
        self.local = nn.Conv1d(heads, heads, kernel_size, padding=kernel_size // 2, groups=heads)
        self.out = nn.Conv1d(heads * head_dim, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, _, t = x.shape
        v = zero_padding(self.value(self.norm(x)), mask)  # [N, d·H, T], channel j = c·H + h
        local = self.local(v.reshape(n * self.head_dim, self.heads, t))  # [N·d, H, T]
        return self.out(local.reshape(n, self.heads * self.head_dim, t))


class FeedForward(nn.Module):
    """Channel LayerNorm → Conv1d(d → m·d, 1×1) → GELU → Dropout → Conv1d(m·d → d, 1×1)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            ChannelLayerNorm(dim), nn.Conv1d(dim, dim * mult, 1), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(dim * mult, dim, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MGFNLayer(nn.Module):
    """x += SCC(x); x += block(x); x += FF(x). Shapes: x [N, C, T], mask [N, T] → [N, C, T]."""

    def __init__(self, dim: int, block: str, heads: int, head_dim: int, kernel_size: int, ff_mult: int,
                 dropout: float):  # fmt: skip
        super().__init__()
        self.shortcut = MaskedConv1d(dim, dim, 3)
        self.block = (
            GlanceBlock(dim, heads, head_dim)
            if block == "glance"
            else FocusBlock(dim, heads, head_dim, kernel_size)
        )
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.shortcut(x, mask) + x
        x = self.block(x, mask) + x
        return self.ff(x) + x


class MGFNHead(nn.Module):
    """MGFN's network (see the module docstring).

    Args:
        in_dim: feature dimension D, taken from the feature store.
        dims: width of each stage (the code's 64, 128, 1024; ``model=mgfn`` uses a compact 64, 128, 128 and
            ``experiment=mgfn`` the code's widths).
        depths: layers per stage (3, 3, 2). blocks: ``glance`` or ``focus`` per stage.
        head_dim: channels per attention head; a stage of width d has max(1, d // head_dim) heads.
        focus_kernel: the focus block's temporal kernel (5). ff_mult: feed-forward expansion (4).
        magnitude_ratio: weight of the magnitude channel in the feature amplification (0.1).
        dropout: feed-forward dropout (0 in the code).
    Shapes: features [N, T, D], mask [N, T] → scores, logits, magnitudes [N, T]; features [N, T, dims[-1]].
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int] = (64, 128, 1024),
        depths: Sequence[int] = (3, 3, 2),
        blocks: Sequence[str] = ("glance", "focus", "focus"),
        head_dim: int = 64,
        focus_kernel: int = 5,
        ff_mult: int = 4,
        magnitude_ratio: float = 0.1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not len(dims) == len(depths) == len(blocks) or not dims:
            raise VadmilError(
                f"MGFN needs one width, depth and block type per stage; got dims={list(dims)}, "
                f"depths={list(depths)}, blocks={list(blocks)}"
            )
        for block in blocks:
            check_choice("MGFN block", block, BLOCKS)
        widths = [int(d) for d in dims]
        self.to_tokens = MaskedConv1d(in_dim, widths[0], 3)
        self.to_magnitude = MaskedConv1d(1, widths[0], 3)
        self.magnitude_ratio = magnitude_ratio
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i, (width, depth, block) in enumerate(zip(widths, depths, blocks, strict=True)):
            heads = max(1, width // head_dim)
            self.stages.append(
                nn.ModuleList(
                    MGFNLayer(width, block, heads, head_dim, focus_kernel, ff_mult, dropout)
                    for _ in range(depth)
                )
            )
            if i + 1 < len(widths):
                self.transitions.append(
                    nn.Sequential(ChannelLayerNorm(width), nn.Conv1d(width, widths[i + 1], 1))
                )
        self.norm = nn.LayerNorm(widths[-1])
        self.fc = nn.Linear(widths[-1], 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        mask = full_mask(features, mask)
        x = features.transpose(1, 2)  # [N, D, T]
        magnitude = features.norm(dim=-1)[:, None, :]  # [N, 1, T]: FAM's input
        x = self.to_tokens(x, mask) + self.magnitude_ratio * self.to_magnitude(magnitude, mask)
        for i, stage in enumerate(self.stages):
            for layer in stage:
                x = layer(x, mask)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        embedded = self.norm(x.transpose(1, 2))  # [N, T, E]
        logits = self.fc(embedded).squeeze(-1)
        return HeadOutput(
            scores=torch.sigmoid(logits), logits=logits, magnitudes=embedded.norm(dim=-1), features=embedded
        )

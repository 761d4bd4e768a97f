"""Snippet graphs and Kipf graph convolutions for the GCN heads (docs/heads.md, GCN).

Every adjacency is [N, T, T] over the snippets of each video and is zero wherever row or column is a padded
snippet, so padded snippets neither send nor receive messages.
"""

from __future__ import annotations

import torch
from torch import nn


def _pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """[N, T] → [N, T, T]: both snippets of the pair are real."""
    return mask[:, :, None] & mask[:, None, :]


def temporal_adjacency(mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """exp(−|i − j| / scale) between real snippets: mask [N, T] → [N, T, T].

    ``scale=1`` is Zhong et al.'s temporal-consistency graph, ``scale=e`` HL-Net's localized graph.
    """
    t = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32)
    graph = torch.exp(-(t[:, None] - t[None, :]).abs() / scale)
    return graph[None] * _pair_mask(mask)


def similarity_adjacency(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zhong et al.'s feature-similarity graph exp(h_i·h_j − max_k h_i·h_k) over real k: h [N, T, E] → [N, T, T]."""
    pair = _pair_mask(mask)
    dots = (h @ h.transpose(1, 2)).masked_fill(~pair, float("-inf"))
    row_max = dots.amax(dim=2, keepdim=True).masked_fill(~mask[:, :, None], 0.0)
    return torch.exp(dots - row_max)  # exp(-inf) = 0 on padded pairs


def holistic_adjacency(x: torch.Tensor, mask: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """HL-Net's holistic graph: cosine similarity of the input features, entries below ``threshold`` set to 0,
    then a softmax over each row's real snippets (thresholded entries keep weight exp(0), as in the code).

    x [N, T, D], mask [N, T] → [N, T, T]; padded rows are all zero.
    """
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    cosine = unit @ unit.transpose(1, 2)
    cosine = torch.where(cosine < threshold, torch.zeros_like(cosine), cosine)
    pair = _pair_mask(mask)
    return torch.softmax(cosine.masked_fill(~pair, float("-inf")), dim=2).nan_to_num(0.0) * pair


def symmetric_normalise(adjacency: torch.Tensor) -> torch.Tensor:
    """D^-½ A D^-½ with D the row sums: [N, T, T] → [N, T, T] (rows summing to 0 stay 0)."""
    degree = adjacency.sum(dim=2)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[:, :, None] * adjacency * inv_sqrt[:, None, :]


class GraphConv(nn.Module):
    """Kipf & Welling's graph convolution Â·(X·W), no bias: x [N, T, in], adjacency [N, T, T] → [N, T, out]."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ self.weight(x)

"""Sultani et al., CVPR 2018: the fully connected MIL ranking baseline."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.heads.output import HeadOutput


class FCNHead(nn.Module):
    """Linear(D→512)+ReLU → Dropout → Linear(512→32) → Dropout → Linear(32→1) → sigmoid, per snippet.

    The paper's code has no activation after the second layer; ``hidden_activation=True`` adds a ReLU there (a
    common port's choice). The L2 weight penalty (0.001 per layer in the paper) lives in the optimiser config.

    Args:
        in_dim: feature dimension D, taken from the feature store.
    Shapes: features [N, T, D], mask [N, T] (unused: scores are per snippet) → scores [N, T].
    """

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, int] = (512, 32),
        dropout: float = 0.6,
        hidden_activation: bool = False,
    ):
        super().__init__()
        h1, h2 = hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim, h1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            nn.ReLU() if hidden_activation else nn.Identity(),
            nn.Dropout(dropout),
            nn.Linear(h2, 1),
        )
        # Glorot-normal initialisation as in the original Keras model.
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        return HeadOutput(scores=torch.sigmoid(self.net(features).squeeze(-1)))

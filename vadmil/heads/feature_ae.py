"""A feature autoencoder: the reconstruction-error family of unsupervised detectors (e.g. Hasan et al., "Learning
Temporal Regularity in Video Sequences", CVPR 2016, which reconstructs frames), here per snippet on frozen features."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.heads.normality import NormalModelHead


class FeatureAEHead(NormalModelHead):
    """Raw score: mean squared reconstruction error of a snippet's feature,
    ``mean_d (dec(enc(x)) - x)²`` with enc = Linear(D→h1)+ReLU→Linear(h1→h2), dec = Linear(h2→h1)+ReLU→Linear(h1→D).

    Trained on normal snippets only (loss: their mean raw score, :class:`~vadmil.losses.normal.NormalErrorLoss`).

    Args:
        in_dim: feature dimension D, taken from the feature store.
        hidden: (h1, h2), h2 the bottleneck.
        dropout: dropout after each hidden layer (training only).
    Shapes: features [N, T, D], mask [N, T] (unused: scores are per snippet) → raw [N, T].
    """

    def __init__(self, in_dim: int, hidden: tuple[int, int] = (256, 64), dropout: float = 0.0,
                 calibration_quantile: float = 0.95):  # fmt: skip
        super().__init__(calibration_quantile)
        h1, h2 = hidden
        self.encoder = nn.Sequential(nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h1, h2))
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, in_dim)
        )

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return ((self.decoder(self.encoder(features)) - features) ** 2).mean(-1)

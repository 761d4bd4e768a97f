"""A temporal next-feature predictor: the prediction-error family of unsupervised detectors (e.g. Liu et al.,
"Future Frame Prediction for Anomaly Detection — A New Baseline", CVPR 2018, which predicts frames), here
predicting each snippet's feature from the ones before it."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vadmil.heads.normality import NormalModelHead


class FeaturePredictorHead(NormalModelHead):
    """Raw score: mean squared error of predicting snippet t from snippets t-context … t-1,
    ``mean_d (f(x[t-context:t]) - x[t])²``, f = Conv1d(D→hidden, kernel=context)+ReLU→Conv1d(hidden→D, 1).

    The first snippets see the first one repeated in place of the missing past (replicate padding). Causal, so
    padding after a video never changes its scores. Trained on normal videos only (loss: the mean raw score).

    Args:
        in_dim: feature dimension D, taken from the feature store.
        context: past snippets the prediction sees.
        hidden: hidden channels.
    Shapes: features [N, T, D], mask [N, T] (unused: padding lies after the valid snippets) → raw [N, T].
    """

    def __init__(self, in_dim: int, context: int = 4, hidden: int = 256, calibration_quantile: float = 0.95):
        super().__init__(calibration_quantile)
        self.context = context
        self.past = nn.Conv1d(in_dim, hidden, kernel_size=context)
        self.out = nn.Conv1d(hidden, in_dim, kernel_size=1)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted features [N, T, D]: position t from the ``context`` snippets before it."""
        x = features.transpose(1, 2)  # [N, D, T]
        past = F.pad(x, (self.context, 0), mode="replicate")  # position t of the conv sees x[t-context : t]
        return self.out(F.relu(self.past(past)))[..., : x.shape[-1]].transpose(1, 2)

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return ((self.predict(features) - features) ** 2).mean(-1)

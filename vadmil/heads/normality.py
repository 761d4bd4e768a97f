"""Shared parts of the unsupervised heads: a model of *normal* features whose raw score (a distance, a Mahalanobis
distance, a reconstruction or prediction error) grows with abnormality, and the calibration that maps raw scores
to [0, 1] so that thresholds and the false-alarm rate mean something.

Calibration: with ``c`` the ``quantile`` (default 0.95) of the raw scores of held-out *normal* snippets (the
normal videos of the validation split, which is part of the training split) and ``s`` their standard deviation,
``score = sigmoid((raw - c) / s)``. The map is strictly increasing, so ranking metrics (AUC, AP) are those of the
raw score; a score above 0.5 means "more anomalous than ``quantile`` of held-out normal snippets", so the
false-alarm rate at 0.5 on normal data is about ``1 - quantile`` (exactly so per crop; scores averaged over crops
stay close to it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput

# A re-iterable source of normal training snippets: each call yields chunks [n, D] (standardised as the head sees
# them); statistics heads may pass over it more than once.
SnippetSource = Callable[[], Iterable[torch.Tensor]]


class ScoreCalibration(nn.Module):
    """``logits = (raw - center) / scale``; ``center`` and ``scale`` are buffers (saved in checkpoints).

    Args:
        quantile: the quantile of held-out normal raw scores mapped to 0.5.
    """

    def __init__(self, quantile: float = 0.95):
        super().__init__()
        if not 0.0 < quantile < 1.0:
            raise VadmilError(f"calibration_quantile must be between 0 and 1 (exclusive), got {quantile}")
        self.quantile = quantile
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def fit(self, raw: torch.Tensor) -> None:
        """Set ``center`` and ``scale`` from the raw scores [M] of held-out normal snippets."""
        values = raw.detach().double().cpu().numpy().reshape(-1)
        values = values[np.isfinite(values)]
        if not len(values):
            raise VadmilError(
                "cannot calibrate the scores: no held-out normal snippets (the validation split has no normal "
                "video with features); raise data.val_fraction or add normal training videos"
            )
        center = float(np.quantile(values, self.quantile))
        scale = float(values.std())
        # Constant scores (a single snippet, a degenerate model) would divide by zero: any positive scale keeps the
        # map increasing.
        self.center.fill_(center)
        self.scale.fill_(scale if scale > 1e-12 * max(1.0, abs(center)) else max(1.0, abs(center)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.center) / self.scale


class NormalModelHead(nn.Module):
    """Base of the unsupervised heads: ``forward`` returns calibrated ``scores``, their ``logits`` and the
    ``raw`` scores; subclasses implement :meth:`raw_scores`.

    ``trainable``: False for heads fitted from statistics of the normal snippets (kNN memory bank, Gaussian
    moments) by :meth:`fit_normal`, True for heads trained by gradient on the error of normal snippets.
    Shapes: features [N, T, D], mask [N, T] → scores, logits, raw [N, T].
    """

    trainable = True

    def __init__(self, calibration_quantile: float = 0.95):
        super().__init__()
        self.calibration = ScoreCalibration(calibration_quantile)

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def fit_normal(self, snippets: SnippetSource) -> None:
        """Fit the statistics of normal snippets (statistics heads only)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient, not fitted from statistics")

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        raw = self.raw_scores(features, mask)
        logits = self.calibration(raw)
        return HeadOutput(scores=torch.sigmoid(logits), logits=logits, raw=raw)

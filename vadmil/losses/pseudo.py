"""Snippet-level BCE on pseudo-labels: the loss of self-training's later stages (vadmil/training/self_training.py)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import bag_mask


class PseudoLabelBCE(nn.Module):
    """Binary cross-entropy between every crop's snippet scores [B, C, T] and the batch's ``targets`` [B, T]
    (pseudo-labels in [0, 1]), averaged over valid snippets.

    Args:
        positive_weight: weight of the positive (anomalous) term, to balance the few positives.
    """

    def __init__(self, positive_weight: float = 1.0):
        super().__init__()
        self.positive_weight = positive_weight

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        targets = batch.get("targets")
        if targets is None:
            raise VadmilError(
                "the pseudo-label loss needs snippet targets; it is used by training=self_training"
            )
        mask = bag_mask(out, batch)[:, None, :].expand_as(out.scores)
        targets = targets[:, None, :].expand_as(out.scores).to(out.scores.dtype)
        weight = 1.0 + (self.positive_weight - 1.0) * targets
        scores = out.scores.clamp(1e-7, 1 - 1e-7)
        loss = F.binary_cross_entropy(scores, targets, weight=weight, reduction="none")
        return loss[mask].mean()

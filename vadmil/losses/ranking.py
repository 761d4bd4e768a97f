"""Sultani et al.'s MIL ranking hinge."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask, bag_max

PAIRINGS = ("all", "one_to_one")
REDUCTIONS = ("sum", "mean")


class MILRankingLoss(nn.Module):
    """max(0, margin − max_t s(a_i)_t + max_t s(n_j)_t) over abnormal bags a_i and normal bags n_j.

    ``pairing="all"`` (official code) pairs every abnormal bag with every normal bag and averages over the normal
    ones; ``"one_to_one"`` (popular ports) pairs the k-th abnormal bag of the batch with the k-th normal one.
    ``reduction`` then sums (official) or averages over abnormal bags. Scores are crop-averaged first.
    """

    def __init__(self, margin: float = 1.0, pairing: str = "all", reduction: str = "sum"):
        super().__init__()
        check_choice("ranking pairing", pairing, PAIRINGS)
        check_choice("ranking reduction", reduction, REDUCTIONS)
        self.margin, self.pairing, self.reduction = margin, pairing, reduction

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        top = bag_max(out.video_scores, bag_mask(out, batch))
        is_abnormal = abnormal(batch)
        a, n = top[is_abnormal], top[~is_abnormal]
        if len(a) == 0 or len(n) == 0:
            return top.sum() * 0.0  # nothing to rank in this batch
        if self.pairing == "all":
            per_abnormal = torch.relu(self.margin - a[:, None] + n[None, :]).mean(dim=1)
        else:
            k = min(len(a), len(n))
            per_abnormal = torch.relu(self.margin - a[:k] + n[:k])
        return per_abnormal.sum() if self.reduction == "sum" else per_abnormal.mean()

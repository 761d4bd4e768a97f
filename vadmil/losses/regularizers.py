"""Temporal smoothness and sparsity of bags' scores (abnormal bags by default; ``bags`` picks others)."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask

BAGS = ("abnormal", "normal", "all")


def _which(batch: dict, bags: str) -> torch.Tensor:
    """Boolean [B]: the bags a regulariser applies to."""
    is_abnormal = abnormal(batch)
    if bags == "all":
        return torch.ones_like(is_abnormal)
    return is_abnormal if bags == "abnormal" else ~is_abnormal


class SmoothnessLoss(nn.Module):
    """Σ (s_{t+1} − s_t)² over the abnormal bags' crop-averaged scores.

    ``per_video=True`` (Sultani; the correct form) differences snippets within each video only;
    ``per_video=False`` reproduces RTFM's code, which flattens all abnormal scores of the batch first and so
    also differences across video boundaries. ``bags``: ``abnormal`` (default), ``normal`` or ``all`` (MGFN's
    code smooths every bag).
    """

    def __init__(self, per_video: bool = True, bags: str = "abnormal"):
        super().__init__()
        check_choice("smoothness bags", bags, BAGS)
        self.per_video, self.bags = per_video, bags

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        keep = _which(batch, self.bags)
        s, mask = out.video_scores[keep], bag_mask(out, batch)[keep]
        if self.per_video:
            valid = mask[:, 1:] & mask[:, :-1]
            return ((s[:, 1:] - s[:, :-1]) ** 2 * valid).sum()
        flat = s[mask]
        return ((flat[1:] - flat[:-1]) ** 2).sum()


class SparsityLoss(nn.Module):
    """Sparsity of the abnormal bags' crop-averaged scores over valid snippets.

    ``norm="l1"``: Σ s (Sultani; RTFM's paper). ``norm="l2"``: ‖s‖₂ of all abnormal scores (RTFM's code).
    ``bags``: ``abnormal`` (default), ``normal`` (MGFN's code) or ``all``.
    """

    def __init__(self, norm: str = "l1", bags: str = "abnormal"):
        super().__init__()
        check_choice("sparsity norm", norm, ("l1", "l2"))
        check_choice("sparsity bags", bags, BAGS)
        self.norm, self.bags = norm, bags

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        keep = _which(batch, self.bags)
        s = out.video_scores[keep][bag_mask(out, batch)[keep]]
        return s.sum() if self.norm == "l1" else torch.linalg.vector_norm(s)

"""Temporal smoothness and sparsity of abnormal bags' scores."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask


class SmoothnessLoss(nn.Module):
    """Σ (s_{t+1} − s_t)² over the abnormal bags' crop-averaged scores.

    ``per_video=True`` (Sultani; the correct form) differences snippets within each video only;
    ``per_video=False`` reproduces RTFM's code, which flattens all abnormal scores of the batch first and so
    also differences across video boundaries.
    """

    def __init__(self, per_video: bool = True):
        super().__init__()
        self.per_video = per_video

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        keep = abnormal(batch)
        s, mask = out.video_scores[keep], bag_mask(out, batch)[keep]
        if self.per_video:
            valid = mask[:, 1:] & mask[:, :-1]
            return ((s[:, 1:] - s[:, :-1]) ** 2 * valid).sum()
        flat = s[mask]
        return ((flat[1:] - flat[:-1]) ** 2).sum()


class SparsityLoss(nn.Module):
    """Sparsity of the abnormal bags' crop-averaged scores over valid snippets.

    ``norm="l1"``: Σ s (Sultani; RTFM's paper). ``norm="l2"``: ‖s‖₂ of all abnormal scores (RTFM's code).
    """

    def __init__(self, norm: str = "l1"):
        super().__init__()
        check_choice("sparsity norm", norm, ("l1", "l2"))
        self.norm = norm

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        keep = abnormal(batch)
        s = out.video_scores[keep][bag_mask(out, batch)[keep]]
        return s.sum() if self.norm == "l1" else torch.linalg.vector_norm(s)

"""DTED's separation term: maximise the mean distance between abnormal and normal instance predictions."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask


class MeanSeparationLoss(nn.Module):
    """1 − (mean score of the abnormal bags' instances − mean score of the normal bags' instances).

    Reconstructed from Kamoona et al.'s description ("maximise the mean distance between normal and abnormal
    instance predictions"): means over every real instance (crop-averaged) of each class in the batch; the
    constant 1 keeps the term in [0, 2] (0 when abnormal instances all score 1 and normal ones 0), so it can be
    minimised like the other terms. The sparsity term counteracts its push on the normal instances of
    abnormal bags.
    """

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        scores, mask, is_abnormal = out.video_scores, bag_mask(out, batch), abnormal(batch)
        if is_abnormal.all() or not is_abnormal.any():
            return scores.sum() * 0.0  # needs both classes
        mean_a = scores[is_abnormal][mask[is_abnormal]].mean()
        mean_n = scores[~is_abnormal][mask[~is_abnormal]].mean()
        return 1.0 - (mean_a - mean_n)

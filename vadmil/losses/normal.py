"""The loss of the unsupervised heads trained by gradient: the mean raw error of normal snippets."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask


class NormalErrorLoss(nn.Module):
    """Mean of ``out.raw`` (reconstruction or prediction error, [B, C, T]) over the valid snippets of every crop.

    Only normal bags may reach it: an abnormal one means the data module served the wrong videos, and training
    on it would silently turn an unsupervised baseline into a weakly supervised one.
    """

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        if out.raw is None:
            raise VadmilError("the normal-error loss needs a head that returns raw scores (model=feature_ae or "
                              "feature_predictor)")  # fmt: skip
        if abnormal(batch).any():
            raise VadmilError("the normal-error loss got an abnormal training bag; unsupervised heads train on the "
                              "normal training videos only")  # fmt: skip
        mask = bag_mask(out, batch)[:, None, :].expand_as(out.raw)
        return out.raw[mask].mean()

"""Top-k snippet selection and the top-k bag classification loss (RTFM, HL-Net)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from vadmil.errors import VadmilError, check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import bag_mask

RANK_BY = ("magnitudes", "scores", "logits")
AGGREGATES = ("scores", "logits")


def _crop_mean(out: HeadOutput, field: str) -> torch.Tensor:
    value = getattr(out, field)
    if value is None:
        raise VadmilError(
            f"top-k selection by '{field}' needs a head that outputs {field}; choose another rank_by"
        )
    return value.mean(dim=1)


class TopKSelector(nn.Module):
    """Selects each bag's top-k snippets by a crop-averaged key; label-free, so every loss term shares it.

    ``k``: a fixed count (RTFM: 3), or ``None`` with ``k_divisor`` for ⌊T/divisor⌋ + 1 per video over its real
    snippets (HL-Net: 16). A bag with fewer real snippets than k selects all of them (RTFM's code crashes on
    these). ``dropout`` multiplies the keys by a dropout mask of ones while training (RTFM: 0.7), which
    randomises the selection; one mask per bag, drawn once per step and shared by all terms.

    Returns the output with ``topk_index`` / ``topk_valid`` [B, K] set, K = min(k_max, T).
    """

    def __init__(self, k: int | None = 3, k_divisor: int | None = None, rank_by: str = "magnitudes",
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        check_choice("top-k rank_by", rank_by, RANK_BY)
        if (k is None) == (k_divisor is None):
            raise VadmilError(
                "top-k selection needs exactly one of k (a count) or k_divisor (k = T // divisor + 1)"
            )
        if (k is not None and k < 1) or (k_divisor is not None and k_divisor < 1):
            raise VadmilError(f"top-k k and k_divisor must be >= 1, got k={k}, k_divisor={k_divisor}")
        self.k, self.k_divisor, self.rank_by = k, k_divisor, rank_by
        self.drop = nn.Dropout(dropout)

    def forward(self, out: HeadOutput, batch: dict) -> HeadOutput:
        mask = bag_mask(out, batch)
        keys = (
            self.drop(torch.ones_like(mask, dtype=out.scores.dtype)) * _crop_mean(out, self.rank_by).detach()
        )
        n_real = mask.sum(dim=1)
        k = torch.full_like(n_real, self.k) if self.k is not None else n_real // self.k_divisor + 1
        k = torch.minimum(k, n_real)
        width = min(int(k.max()), mask.shape[1])
        index = keys.masked_fill(~mask, float("-inf")).topk(width, dim=1).indices
        valid = torch.arange(width, device=mask.device)[None, :] < k[:, None]
        return replace(out, topk_index=index, topk_valid=valid)


def selected(out: HeadOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, valid) of the selected snippets [B, K]; an error if the objective has no selector."""
    if out.topk_index is None:
        raise VadmilError(
            "this loss needs top-k snippets: give the objective a selector (vadmil.losses.topk.TopKSelector)"
        )
    return out.topk_index, out.topk_valid


def mean_selected(values: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, T] over each bag's valid selected snippets → [B]."""
    picked = values.gather(1, index) * valid
    return picked.sum(dim=1) / valid.sum(dim=1).clamp_min(1)


class TopKBCELoss(nn.Module):
    """BCE between each bag's top-k score and its video label, averaged over the batch.

    ``aggregate="scores"`` (RTFM): the bag score is the mean of the crop-averaged scores at the selected
    snippets. ``"logits"`` (HL-Net): sigmoid of the mean of the crop-averaged logits there.
    """

    def __init__(self, aggregate: str = "scores"):
        super().__init__()
        check_choice("top-k aggregate", aggregate, AGGREGATES)
        self.aggregate = aggregate

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        index, valid = selected(out)
        label = batch["label"].to(out.scores.dtype)
        if self.aggregate == "logits":
            return F.binary_cross_entropy_with_logits(
                mean_selected(_crop_mean(out, "logits"), index, valid), label
            )
        bag = mean_selected(out.video_scores, index, valid)
        return F.binary_cross_entropy(bag.clamp(1e-7, 1 - 1e-7), label)

"""UR-DMU's losses (Zhou et al., AAAI 2023; official code ``train.py`` / ``model.py``): top-k BCE on the scores,
BCE on the memory read-out scores, a triplet on the embeddings, the KL of the normal uncertainty branch and the
read-out distance. They read the ``aux`` tensors of :class:`~vadmil.heads.urdmu.URDMUHead`.

Selections use k = ⌊T_real / 16⌋ + 1 per video (the code's ``t // 16 + 1`` on its 200 un-padded segments).
Terms that pair normal with abnormal bags pair them in batch order (the code concatenates 64 normal and
64 abnormal videos and pairs row i with row i); unequal counts use the first min(n_normal, n_abnormal) of each.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vadmil.errors import VadmilError, check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal, bag_mask

KL_REDUCE = ("code", "latent")
_EPS = 1e-7


def _aux(out: HeadOutput, name: str) -> torch.Tensor:
    if out.aux is None or name not in out.aux:
        raise VadmilError(
            f"this UR-DMU loss needs the head's '{name}' (vadmil.heads.urdmu.URDMUHead, in training mode)"
        )
    return out.aux[name]


def topk_k(mask: torch.Tensor, divisor: int) -> torch.Tensor:
    """k = ⌊T_real / divisor⌋ + 1 per row, clipped to T_real: mask [R, T] → [R]."""
    n_real = mask.sum(dim=-1)
    return torch.minimum(n_real // divisor + 1, n_real).clamp_min(1)


def topk_index(values: torch.Tensor, mask: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's top-k real entries: values [R, T], mask [R, T] → index, valid [R, K]."""
    k = topk_k(mask, divisor)
    width = min(int(k.max()), values.shape[-1])
    index = values.masked_fill(~mask, float("-inf")).topk(width, dim=-1).indices
    return index, torch.arange(width, device=values.device)[None, :] < k[:, None]


def topk_mean(values: torch.Tensor, mask: torch.Tensor, divisor: int) -> torch.Tensor:
    """Mean of each row's top-k real values: [R, T] → [R]."""
    index, valid = topk_index(values, mask, divisor)
    return torch.where(valid, values.gather(-1, index), 0.0).sum(-1) / valid.sum(-1)


def selected_feature(
    features: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor,
    divisor: int,
    by: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean feature at each crop's top-k snippets by ``key``, then averaged over crops (the code selects per crop).

    features [B, C, T, E] (gathered), key [B, C, T] (ranks), mask [B, T] → [B, E]. ``by``: other features to
    gather at the same snippets (default: ``features``).
    """
    b, c, t, e = features.shape
    crop_mask = mask.repeat_interleave(c, dim=0)
    index, valid = topk_index(key.reshape(b * c, t), crop_mask, divisor)
    source = (features if by is None else by).reshape(b * c, t, e)
    picked = torch.where(valid[:, :, None], source.gather(1, index[:, :, None].expand(-1, -1, e)), 0.0)
    return (picked.sum(1) / valid.sum(1, keepdim=True)).reshape(b, c, e).mean(dim=1)


def _pairs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the paired (normal, abnormal) bags in batch order."""
    is_abnormal = abnormal(batch)
    normal, anomalous = (~is_abnormal).nonzero()[:, 0], is_abnormal.nonzero()[:, 0]
    p = min(len(normal), len(anomalous))
    return normal[:p], anomalous[:p]


class UncertainTopKBCELoss(nn.Module):
    """BCE between the mean of each bag's top-k crop-averaged scores and its label.

    Normal bags use the scores made with the sampled normal read (``aux["normal_scores"]``), abnormal bags
    the μ scores, as in the code (``sampled_normal=False``: μ scores for every bag).
    Shapes: out.scores [B, C, T] → scalar.
    """

    def __init__(self, k_divisor: int = 16, sampled_normal: bool = True):
        super().__init__()
        self.k_divisor, self.sampled_normal = k_divisor, sampled_normal

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        scores = out.scores
        label = batch["label"].to(scores.dtype)
        if self.sampled_normal:
            pick = abnormal(batch)[:, None, None]
            scores = torch.where(pick, scores, _aux(out, "normal_scores"))
        bag = topk_mean(scores.mean(dim=1), bag_mask(out, batch), self.k_divisor)
        return F.binary_cross_entropy(bag.clamp(_EPS, 1 - _EPS), label)


class MemoryBCELoss(nn.Module):
    """BCE on the memory read-out scores (crop-averaged), the sum of the code's four terms:

    abnormal bags: top-k mean of the abnormal-memory score → 1, top-k mean of (1 − normal-memory score) → 1
    (at least one snippet unlike normality); normal bags: every real snippet's normal-memory score → 1 and
    abnormal-memory score → 0 (means over real snippets). A batch without one class drops its terms.
    Shapes: aux attentions [B, C, T] → scalar.
    """

    def __init__(self, k_divisor: int = 16):
        super().__init__()
        self.k_divisor = k_divisor

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        a_att = _aux(out, "abnormal_attention").mean(dim=1).clamp(_EPS, 1 - _EPS)
        n_att = _aux(out, "normal_attention").mean(dim=1).clamp(_EPS, 1 - _EPS)
        mask, is_abnormal = bag_mask(out, batch), abnormal(batch)
        total = a_att.sum() * 0.0
        if is_abnormal.any():
            m = mask[is_abnormal]
            for top in (topk_mean(a_att[is_abnormal], m, self.k_divisor),
                        topk_mean(1 - n_att[is_abnormal], m, self.k_divisor)):  # fmt: skip
                total = total - torch.log(top).mean()
        if (~is_abnormal).any():
            m = mask[~is_abnormal]
            for per_snippet in (-torch.log(n_att[~is_abnormal]), -torch.log(1 - a_att[~is_abnormal])):
                total = total + torch.where(m, per_snippet, 0.0).sum() / m.sum()
        return total


class MemoryTripletLoss(nn.Module):
    """Triplet margin loss on L2-normalised embeddings (``out.features``), pairs in batch order:

    anchor: a normal bag's mean embedding at its top-k normal-memory snippets; positive: the paired abnormal
    bag's at its top-k normal-memory snippets (its most normal part); negative: the same abnormal bag's at
    its top-k abnormal-memory snippets. Per crop, then averaged over crops; max(0, ‖a−p‖ − ‖a−n‖ + margin).
    """

    def __init__(self, margin: float = 1.0, k_divisor: int = 16):
        super().__init__()
        self.margin, self.k_divisor = margin, k_divisor

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        normal, anomalous = _pairs(batch)
        if len(normal) == 0:
            return out.features.sum() * 0.0
        x, mask = out.features, bag_mask(out, batch)
        a_att, n_att = _aux(out, "abnormal_attention"), _aux(out, "normal_attention")
        d = self.k_divisor
        anchor = selected_feature(x[normal], n_att[normal], mask[normal], d)
        positive = selected_feature(x[anomalous], n_att[anomalous], mask[anomalous], d)
        negative = selected_feature(x[anomalous], a_att[anomalous], mask[anomalous], d)
        return F.triplet_margin_loss(
            F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1), F.normalize(negative, dim=-1),
            margin=self.margin,
        )  # fmt: skip


class LatentKLLoss(nn.Module):
    """KL(N(μ, σ²) ‖ N(0, I)) of the normal bags' normal-memory reads: −½ (1 + log σ² − μ² − σ²).

    ``reduce="code"`` (default): summed over time (the code's ``sum(dim=1)`` on [B, T, D]), averaged over bags,
    crops and channels; ``"latent"``: the textbook form, summed over the latent channels, averaged over real
    snippets, bags and crops. Padded snippets never count. Shapes: aux normal_mu / normal_logvar [B, C, T, E].
    """

    def __init__(self, reduce: str = "code"):
        super().__init__()
        check_choice("UR-DMU KL reduce", reduce, KL_REDUCE)
        self.reduce = reduce

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        mu, logvar = _aux(out, "normal_mu"), _aux(out, "normal_logvar")
        normal = ~abnormal(batch)
        if not normal.any():
            return mu.sum() * 0.0
        mu, logvar = mu[normal], logvar[normal]
        m = bag_mask(out, batch)[normal][:, None, :, None]  # [b, 1, T, 1]
        kl = torch.where(m, -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()), 0.0)  # [b, C, T, E]
        if self.reduce == "code":
            return kl.sum(dim=2).mean()
        return kl.sum(dim=-1).sum() / (m.sum() * mu.shape[1])


class ReadDistanceLoss(nn.Module):
    """max(0, m − ‖r_abn‖ + ‖r_nor‖) averaged over pairs (the code's ``distance``; m = 100, weight 1e-4).

    r_nor: a normal bag's sampled normal read, averaged over its top-k normal-memory snippets (the anchor);
    r_abn: the paired abnormal bag's μ abnormal read over its top-k abnormal-memory snippets. The abnormal read's
    norm is pushed ``margin`` above the normal one's. Per crop, then averaged over crops. Shapes: aux reads
    [B, C, T, E] → scalar.
    """

    def __init__(self, margin: float = 100.0, k_divisor: int = 16):
        super().__init__()
        self.margin, self.k_divisor = margin, k_divisor

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        normal, anomalous = _pairs(batch)
        a_read, n_read = _aux(out, "abnormal_read"), _aux(out, "normal_read")
        if len(normal) == 0:
            return a_read.sum() * 0.0
        mask, d = bag_mask(out, batch), self.k_divisor
        a_att, n_att = _aux(out, "abnormal_attention"), _aux(out, "normal_attention")
        anchor = selected_feature(n_read[normal], n_att[normal], mask[normal], d)
        negative = selected_feature(a_read[anomalous], a_att[anomalous], mask[anomalous], d)
        return torch.relu(self.margin - negative.norm(dim=-1) + anchor.norm(dim=-1)).mean()

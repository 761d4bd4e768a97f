"""MGFN's magnitude-contrastive loss: top-k feature magnitudes of bags of one class close, of the two classes apart."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import VadmilError, check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal
from vadmil.losses.topk import selected

PAIRINGS = ("code", "all")
NORMS = ("l1", "l2")
_EPS = 1e-6  # torch.nn.functional.pairwise_distance's eps, which the code's distance uses


def contrastive(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, margin: float, apart: bool
) -> torch.Tensor:
    """Hadsell-style contrastive loss of row pairs, averaged: d² (``apart=False``) or max(0, margin − d)².

    d = ‖x − y + eps‖₂ over the entries valid in both rows (as ``F.pairwise_distance``).
    Shapes: x, y, valid [P, K] → scalar (0 when P = 0).
    """
    if x.shape[0] == 0:
        return x.sum() * 0.0
    d = ((x - y + _EPS) * valid).norm(dim=-1)
    return (torch.relu(margin - d) if apart else d).pow(2).mean()


class MagnitudeContrastiveLoss(nn.Module):
    """separate_weight · L(abnormal ↔ normal, apart) + L(normal ↔ normal, close) + L(abnormal ↔ abnormal, close).

    Each bag b and crop c gives a magnitude vector m[b, c] ∈ R^K: the ``norm`` of the features at the bag's K
    selected snippets (the objective's top-k by magnitude, shared with the BCE term). ``norm="l1"`` is the code
    (``torch.norm(p=1)`` of each selected feature); ``"l2"`` is the magnitude the paper's FAM defines.

    ``pairing="code"`` (the official code): abnormal bag i is paired with normal bag i of the same crop
    (unequal counts use the first min(n_a, n_n) of each). For the same-class terms, each class's vectors are
    stacked crop-major ([C·n, K]: crop 0's bags, then crop 1's, ...) and the first half of the rows is paired
    with the second half. With 10 crops this pairs each crop with crop c + 5 of the *same* video (TenCrop's
    mirror image); with one crop it pairs different videos. ``pairing="all"`` (the paper's sums over pairs of
    clips): every abnormal × normal pair and every pair of distinct bags of one class, within each crop.

    Bags with fewer real snippets than K (short videos) compare only the entries valid in both.
    Shapes: out.features [B, C, T, E], out.topk_index / topk_valid [B, K] → scalar.
    """

    def __init__(self, margin: float = 200.0, separate_weight: float = 1e-3, norm: str = "l1",
                 pairing: str = "code"):  # fmt: skip
        super().__init__()
        check_choice("magnitude-contrastive norm", norm, NORMS)
        check_choice("magnitude-contrastive pairing", pairing, PAIRINGS)
        self.margin, self.separate_weight, self.norm, self.pairing = margin, separate_weight, norm, pairing

    def magnitudes(self, out: HeadOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(m [B, C, K], valid [B, K]): the norm of each selected snippet's feature, per crop."""
        if out.features is None:
            raise VadmilError(
                "the magnitude-contrastive loss needs a head that outputs features (e.g. MGFNHead)"
            )
        index, valid = selected(out)
        b, c, _, e = out.features.shape
        picked = out.features.gather(2, index[:, None, :, None].expand(b, c, -1, e))  # [B, C, K, E]
        return picked.norm(p=1 if self.norm == "l1" else 2, dim=-1), valid

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        m, valid = self.magnitudes(out)
        is_abnormal = abnormal(batch)
        a, n = m[is_abnormal], m[~is_abnormal]  # [n_a, C, K], [n_n, C, K]
        va, vn = valid[is_abnormal], valid[~is_abnormal]
        pairs = self._code_pairs if self.pairing == "code" else self._all_pairs
        separate = contrastive(*pairs(a, va, n, vn), self.margin, apart=True)
        close_n = contrastive(*pairs(n, vn), self.margin, apart=False)
        close_a = contrastive(*pairs(a, va), self.margin, apart=False)
        return self.separate_weight * separate + close_n + close_a

    @staticmethod
    def _code_pairs(x, vx, y=None, vy=None):
        """Row pairs (x_rows, y_rows, joint validity) [P, K] as the code forms them."""
        c, k = x.shape[1], x.shape[2]
        if y is not None:  # abnormal bag i with normal bag i, per crop, rows crop-major [C·p, K]
            p = min(len(x), len(y))
            joint = (vx[:p] & vy[:p]).repeat(c, 1).to(x.dtype)
            return x[:p].transpose(0, 1).reshape(-1, k), y[:p].transpose(0, 1).reshape(-1, k), joint
        stacked = x.transpose(0, 1).reshape(-1, k)  # crop-major [C·n, K]
        v = vx.repeat(c, 1)
        h = len(stacked) // 2
        return stacked[h : 2 * h], stacked[:h], (v[h : 2 * h] & v[:h]).to(x.dtype)

    @staticmethod
    def _all_pairs(x, vx, y=None, vy=None):
        """Every cross-class pair, or every pair of distinct bags of one class, within each crop."""
        c, k = x.shape[1], x.shape[2]
        if y is not None:
            i, j = torch.cartesian_prod(torch.arange(len(x)), torch.arange(len(y))).reshape(-1, 2).unbind(1)
            other, v_other = y, vy
        else:
            i, j = torch.triu_indices(len(x), len(x), offset=1)
            other, v_other = x, vx
        i, j = i.to(x.device), j.to(x.device)
        joint = (vx[i] & v_other[j]).repeat(c, 1).to(x.dtype)
        return x[i].transpose(0, 1).reshape(-1, k), other[j].transpose(0, 1).reshape(-1, k), joint

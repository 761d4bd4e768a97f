"""RTFM's feature-magnitude loss: separate the top-k feature magnitudes of abnormal and normal bags."""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import VadmilError, check_choice
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import abnormal
from vadmil.losses.topk import selected

FORMS = ("code", "paper")


class FeatureMagnitudeLoss(nn.Module):
    """Push abnormal bags' top-k mean feature norm to ``margin`` and normal bags' towards 0.

    For each crop c and bag, ā / n̄ is the mean feature over the bag's selected snippets (selection is shared
    across crops). Abnormal bag i is paired with normal bag i of the batch (the code's element-wise pairing;
    unequal counts use the first min(n_a, n_n) of each), giving [P, C] pairs:

    - ``form="code"`` (default, the official code): mean of (|m − ‖ā‖₂| + ‖n̄‖₂)²;
    - ``form="paper"``: mean of max(0, m − ‖ā‖₂ + ‖n̄‖₂).

    Shapes: out.features [B, C, T, E], out.topk_index [B, K] → scalar.
    """

    def __init__(self, margin: float = 100.0, form: str = "code"):
        super().__init__()
        check_choice("magnitude loss form", form, FORMS)
        self.margin, self.form = margin, form

    def forward(self, out: HeadOutput, batch: dict) -> torch.Tensor:
        if out.features is None:
            raise VadmilError("the magnitude loss needs a head that outputs features (e.g. RTFMHead)")
        index, valid = selected(out)
        b, c, _, e = out.features.shape
        gathered = out.features.gather(2, index[:, None, :, None].expand(b, c, -1, e))  # [B, C, K, E]
        weights = valid[:, None, :, None].to(gathered.dtype)
        norms = ((gathered * weights).sum(dim=2) / weights.sum(dim=2).clamp_min(1)).norm(dim=-1)  # [B, C]
        is_abnormal = abnormal(batch)
        a, n = norms[is_abnormal], norms[~is_abnormal]
        p = min(len(a), len(n))
        if p == 0:
            return norms.sum() * 0.0  # no pair in this batch
        a, n = a[:p], n[:p]
        if self.form == "code":
            return ((self.margin - a).abs() + n).pow(2).mean()
        return torch.relu(self.margin - a + n).mean()

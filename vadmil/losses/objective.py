"""An objective: named loss terms with weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput


class Objective(nn.Module):
    """Weighted sum of named loss terms.

    Args:
        terms: ``{name: {"loss": nn.Module, "weight": float}}`` (instantiated from ``conf/model/objective``).
        selector: optional label-free module run once before the terms (e.g. a
            :class:`~vadmil.losses.topk.TopKSelector`), so terms that need the same selection share it.
    Returns from ``forward``: the total loss and the weighted part of each term (they sum to the total), logged
    as ``train/loss/<name>``.
    """

    def __init__(self, terms: Mapping[str, Mapping], selector: nn.Module | None = None):
        super().__init__()
        if not terms:
            raise VadmilError("the objective has no terms; give model.objective.terms at least one loss")
        for name, term in terms.items():
            if not isinstance(term.get("loss"), nn.Module):
                raise VadmilError(
                    f"objective term '{name}' needs a 'loss' with a _target_ naming a loss module"
                )
        self.losses = nn.ModuleDict({name: term["loss"] for name, term in terms.items()})
        self.weights = {name: float(term.get("weight", 1.0)) for name, term in terms.items()}
        self.selector = selector

    def forward(self, out: HeadOutput, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.selector is not None:
            out = self.selector(out, batch)
        parts = {name: self.weights[name] * loss(out, batch) for name, loss in self.losses.items()}
        return torch.stack(list(parts.values())).sum(), parts

"""The output every head returns."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class HeadOutput:
    """What a head produces for a batch of bags.

    Heads fill it with leading dimension N = B·C (bags × crops); the Lightning module folds every tensor to
    [B, C, ...] before losses see it.

    Attributes:
        scores: per-snippet anomaly probabilities in [0, 1], [N, T] (folded: [B, C, T]).
        logits: optional pre-sigmoid scores, [N, T] (losses that pool logits, e.g. HL-Net's top-k BCE).
        magnitudes: optional per-snippet feature magnitudes, [N, T] (RTFM-style heads).
        features: optional per-snippet embeddings the losses need, [N, T, E].
        raw: optional uncalibrated anomaly scores of the normal-model heads (distance, Mahalanobis distance,
            reconstruction or prediction error; larger is more anomalous), [N, T] (see
            :mod:`vadmil.heads.normality`).
        topk_index, topk_valid: set after folding by an objective's selector (label-free, shared by every term
            that needs it): the selected snippets of each bag [B, K] and which of them are real [B, K] (K is
            clipped to T; bags with fewer valid snippets than K have invalid trailing entries).
        aux: optional named per-snippet tensors [N, T, ...] that only a head's own loss terms read (e.g.
            UR-DMU's memory read-outs); folded like the other fields.
    """

    scores: torch.Tensor
    logits: torch.Tensor | None = None
    magnitudes: torch.Tensor | None = None
    features: torch.Tensor | None = None
    raw: torch.Tensor | None = None
    topk_index: torch.Tensor | None = None
    topk_valid: torch.Tensor | None = None
    aux: dict[str, torch.Tensor] | None = None

    def fold(self, n_bags: int, n_crops: int) -> HeadOutput:
        """Reshape every tensor (and every ``aux`` tensor) from [B·C, ...] to [B, C, ...]."""

        def _fold(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n_bags, n_crops, *t.shape[1:])

        folded = {
            f.name: _fold(getattr(self, f.name))
            for f in fields(self)
            if f.name != "aux" and getattr(self, f.name) is not None
        }
        if self.aux is not None:
            folded["aux"] = {name: _fold(t) for name, t in self.aux.items()}
        return replace(self, **folded)

    @property
    def video_scores(self) -> torch.Tensor:
        """Crop-averaged snippet scores [B, T] of a folded output."""
        return self.scores.mean(dim=1)

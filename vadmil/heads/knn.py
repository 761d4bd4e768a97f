"""kNN distance to normal snippets: the distance-based family of unsupervised detectors (e.g. Bergman et al.,
"Deep Nearest Neighbor Anomaly Detection", 2020; PatchCore, CVPR 2022, for the memory bank), on frozen features."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vadmil.errors import check_choice
from vadmil.heads.normality import NormalModelHead, SnippetSource

METRICS = ("cosine", "l2")


class KNNHead(NormalModelHead):
    """Raw score: mean distance from a snippet to its ``k`` nearest normal training snippets (exact search).

    The memory bank holds the normal training snippets (every crop), or a uniform random subset of
    ``max_bank`` of them (seeded), as a buffer, so it travels in the checkpoint.

    Args:
        in_dim: feature dimension D, taken from the feature store.
        k: neighbours averaged (clipped to the bank size).
        metric: ``cosine`` (1 - cosine similarity) or ``l2`` (Euclidean distance).
        max_bank: the most snippets kept (memory: max_bank x D x 4 bytes).
        chunk: query snippets per distance block (memory: chunk x bank floats).
        seed: the bank subsample's seed.
    Shapes: features [N, T, D], mask [N, T] (unused: scores are per snippet) → raw [N, T].
    """

    trainable = False

    def __init__(self, in_dim: int, k: int = 5, metric: str = "l2", max_bank: int = 100_000,
                 chunk: int = 1024, seed: int = 0, calibration_quantile: float = 0.95):  # fmt: skip
        super().__init__(calibration_quantile)
        check_choice("knn metric", metric, METRICS)
        self.k, self.metric, self.max_bank, self.chunk, self.seed = k, metric, max_bank, chunk, seed
        self.register_buffer("bank", torch.zeros(0, in_dim))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.metric == "cosine" else x

    @torch.no_grad()
    def fit_normal(self, snippets: SnippetSource) -> None:
        """Keep the ``max_bank`` snippets with the smallest random keys: a uniform sample in one pass."""
        generator = torch.Generator().manual_seed(self.seed)
        bank, keys = self.bank.new_zeros(0, self.bank.shape[1]), torch.zeros(0)
        for x in snippets():
            new = torch.rand(len(x), generator=generator)
            if len(bank) < self.max_bank:  # filling up
                bank, keys = torch.cat([bank, self._prepare(x.to(self.bank))]), torch.cat([keys, new])
                if len(bank) > self.max_bank:
                    keep = keys.topk(self.max_bank, largest=False).indices.sort().values
                    bank, keys = bank[keep], keys[keep]
                continue
            # Full: a new snippet enters only with a key below the largest kept one, into the slot of an evicted
            # snippet (in place: the bank is never copied).
            take = (new < keys.max()).nonzero().squeeze(1)
            if not len(take):
                continue
            kept = torch.zeros(len(keys) + len(take), dtype=torch.bool)
            kept[torch.cat([keys, new[take]]).topk(self.max_bank, largest=False).indices] = True
            slots, incoming = (~kept[: len(keys)]).nonzero().squeeze(1), take[kept[len(keys) :]]
            bank[slots.to(bank.device)] = self._prepare(x[incoming.to(x.device)].to(self.bank))
            keys[slots] = new[incoming]
        self.bank = bank.contiguous()

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Distances [M, bank] of queries [M, D] (already prepared) to the bank."""
        if self.metric == "cosine":
            return 1.0 - x @ self.bank.T
        sq = (x * x).sum(-1, keepdim=True) + (self.bank * self.bank).sum(-1) - 2.0 * x @ self.bank.T
        return sq.clamp_min(0.0).sqrt()

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, t, d = features.shape
        x = self._prepare(features.reshape(n * t, d))
        if len(self.bank) == 0:  # not fitted yet
            return x.new_zeros(n, t)
        k = min(self.k, len(self.bank))
        out = [self.distances(q).topk(k, dim=1, largest=False).values.mean(1) for q in x.split(self.chunk)]
        return torch.cat(out).reshape(n, t)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The bank's size is whatever fitting kept: take it from the checkpoint.
        bank = state_dict.get(prefix + "bank")
        if isinstance(bank, torch.Tensor) and bank.ndim == 2 and bank.shape[1] == self.bank.shape[1]:
            self.bank = torch.empty_like(bank, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

"""Validation batches read once and kept in memory, within a budget.

Without the cache every validation re-reads the validation videos from the store, re-normalises them and pads
them into batches again; on 10-crop 2048-d features that costs more than the forward pass. The cache keeps the
collated batches of the first pass — the very tensors the loader produced, same videos, order and padding — so
later validations score exactly the inputs they would have re-read (identical scores), and it is used only when
their padded size fits the budget (else every validation reads, as before). A cached pass also consumes the
random numbers a reading pass would, so a fit's training is the same with or without the cache.

Crops are not averaged before the head: every head ends in a sigmoid (and most are non-linear before it), so
the mean over crops of the scores differs from the score of the mean feature. Validation scores all crops in one
batched forward pass ([B·C, T, D]) and averages the scores, as the test does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

log = logging.getLogger(__name__)


def padded_size(store: FeatureStore, ids: Sequence[str], batch_size: int) -> tuple[int, int]:
    """(snippet rows, bytes) of the padded float32 batches that a video loader over ``ids`` yields: each batch of
    ``batch_size`` consecutive videos is padded to its longest, and every crop is a row ([B, C, T_max, D])."""
    lengths = [store.n_snippets(v) for v in ids]
    chunks = (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size))
    rows = store.n_crops * sum(len(chunk) * max(chunk) for chunk in chunks)
    return rows, rows * store.feature_dim * 4


def check_budget(budget_mb) -> float:
    """``data.val_cache_mb`` as a number of MiB ≥ 0, else a clear error."""
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, int | float) or not budget_mb >= 0:
        raise VadmilError(
            f"data.val_cache_mb={budget_mb!r}: give a memory budget in MiB ≥ 0 (0: read the validation videos at "
            "every validation)"
        )
    return float(budget_mb)


def fits(nbytes: int, budget_mb: float) -> bool:
    """Whether ``nbytes`` of batches may be kept under a budget of ``budget_mb`` MiB (0 or less: never)."""
    return budget_mb > 0 and nbytes <= budget_mb * 2**20


def _draw_like_a_new_iterator(loader) -> None:
    """Consume what iterating ``loader`` would draw from torch's global generator: each new DataLoader iterator
    draws one int64 base seed (a persistent multi-worker loader only its first). Training's random stream
    (shuffling, dropout) then runs exactly as when validation reads, so the cache never changes a fit."""
    if isinstance(loader, DataLoader) and not (loader.persistent_workers and loader.num_workers > 0):
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)


class CachedBatches:
    """Iterate ``loader``; after the first complete pass, iterate the kept batches instead of reading again.

    Args:
        loader: the validation loader (any re-iterable of batches).
        nbytes: the padded size of its batches (:func:`padded_size`).
        budget_mb: the most memory the kept batches may take, in MiB (0: never keep).
    """

    def __init__(self, loader: Iterable, nbytes: int, budget_mb: float):
        self.loader, self.nbytes, self.budget_mb = loader, nbytes, budget_mb
        self.enabled = fits(nbytes, budget_mb)
        self.batches: list | None = None
        log.info(
            "validation features: %.0f MiB padded, %s (data.val_cache_mb=%g)", nbytes / 2**20,
            "kept in memory after the first validation" if self.enabled else "read at every validation",
            budget_mb,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        if self.batches is not None:
            _draw_like_a_new_iterator(self.loader)
            yield from self.batches
            return
        kept = [] if self.enabled else None
        for batch in self.loader:
            if kept is not None:
                kept.append(batch)
                if len(kept) == len(self.loader):  # kept only after a complete pass
                    self.batches = kept
            yield batch

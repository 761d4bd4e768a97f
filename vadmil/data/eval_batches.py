"""Test batches of videos of similar length, bounded by a padded-row budget.

Test videos are scored in padded batches, and a batch costs its padded size: B videos × C crops × the longest
video's T. Batching the test split in annotation order pads every video to the longest of its batch; UCF-Crime's
lengths span 20 to ~7,000 snippets, so most of the rows scored that way are padding. Here the videos are sorted by
length (longest first, so the largest batch comes first and a memory problem shows at once) and cut into
consecutive batches of at most ``max_rows`` padded rows (a video longer than the budget is a batch of its own), in
which no video is padded by more than a quarter of the batch's length (so padding stays below a quarter of the
rows; one-video batches, as the graph heads and RTFM used, pad nothing but leave short videos' products small).
The budget also bounds the T × T affinities of the graph heads and RTFM's non-local block: a batch's are at most
``max_rows × T_max`` floats, about what its longest video costs alone (so those heads need no one-video batches). Every head ignores padded snippets (``vadmil.heads.temporal``; tested for
each head), so a video's scores do not depend on its batch: they match scoring it alone up to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import DataLoader, Sampler

from vadmil.data.labels import VideoLabel
from vadmil.data.loaders import FullVideos, collate_videos
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

MAX_PADDING = 0.25  # the most a video may be padded, as a share of its batch's longest video
# 65,536 rows = 512 MiB of 2048-d float32 input per batch: large enough that CPU and GPU matrix products run at
# full speed, small enough that a batch of long 10-crop videos and its activations fit in memory.
DEFAULT_MAX_ROWS = 65_536


class LengthBatches(Sampler[list[int]]):
    """Index batches of a list of videos, by decreasing length, each within a padded-row budget.

    Args:
        lengths: the number of snippets of each video (index order).
        max_rows: the most padded rows in a batch, ``len(batch) × crops × T_max`` (``data.eval_batch_rows``).
        crops: crops per video (each is a row of the head's input).
    """

    def __init__(self, lengths: Sequence[int], max_rows: int, crops: int = 1):
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise VadmilError(f"data.eval_batch_rows={max_rows!r}: give a number of rows >= 1 (e.g. 65536)")
        order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
        self.batches: list[list[int]] = []
        for index in order.tolist():
            batch = self.batches[-1] if self.batches else None
            # the batch's first video is its longest: a video added is padded to that length
            longest = lengths[batch[0]] if batch else 0
            fits = (len(batch or ()) + 1) * crops * longest <= max_rows
            if batch and fits and lengths[index] >= (1 - MAX_PADDING) * longest:
                batch.append(index)
            else:
                self.batches.append([index])

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def padded_rows(lengths: Sequence[int], batches: Sequence[Sequence[int]], crops: int = 1) -> int:
    """Rows a head scores for these index batches: Σ len(batch) × crops × its longest video."""
    return sum(len(b) * crops * max(lengths[i] for i in b) for b in batches)


def length_batched_loader(store: FeatureStore, videos: Mapping[str, VideoLabel], ids: Sequence[str],
                          normalise: str, max_rows: int = DEFAULT_MAX_ROWS, num_workers: int = 0) -> DataLoader:  # fmt: skip
    """Full-length padded videos ``ids`` (as :func:`vadmil.data.loaders.video_loader`) in length-sorted batches
    within ``max_rows``: the loader for scoring a test split (batches in length order, not in ``ids`` order)."""
    ids = list(ids)
    sampler = LengthBatches([store.n_snippets(v) for v in ids], int(max_rows), store.n_crops)
    return DataLoader(
        FullVideos(store, videos, ids, normalise), batch_sampler=sampler, collate_fn=collate_videos,
        num_workers=num_workers, persistent_workers=num_workers > 0,
    )  # fmt: skip

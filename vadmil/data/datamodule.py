"""MILDataModule: joins a feature store with annotations by video id and serves MIL bags.

Train items are bags pooled to ``n_segments`` segments, drawn in balanced batches (half normal, half abnormal).
Validation (a stratified split of the training videos, used for model selection) and test items are full-length
videos, padded per batch with a mask. Labels never come from the store: they are joined by id at setup.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vadmil.data.bags import eval_features, pool_segments
from vadmil.data.checks import check_split
from vadmil.data.eval_batches import DEFAULT_MAX_ROWS, length_batched_loader
from vadmil.data.eval_cache import CachedBatches, check_budget, fits, padded_size
from vadmil.data.labels import VideoLabel
from vadmil.data.loaders import collate_bags, video_loader
from vadmil.data.store import FeatureStore
from vadmil.data.streams import check_fusion, open_streams, stream_dims_of
from vadmil.errors import VadmilError, check_choice
from vadmil.training.standardise import feature_statistics

log = logging.getLogger(__name__)
CROP_MODES = ("stack", "independent")


def _id_list(ids: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def stratified_split(
    videos: Mapping[str, VideoLabel], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """(train ids, validation ids): ``fraction`` of each class, at least one video of each, seeded."""
    if not 0.0 < fraction < 1.0:
        raise VadmilError(f"data.val_fraction must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in (0, 1):
        ids = sorted(v for v, lab in videos.items() if lab.label == label)
        if len(ids) < 2:
            kind = "abnormal" if label else "normal"
            raise VadmilError(
                f"the training split has {len(ids)} {kind} video(s); at least 2 are needed to hold one out for "
                "validation — add videos or check the training annotations"
            )
        ids = [ids[i] for i in rng.permutation(len(ids))]
        n_val = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        val += ids[:n_val]
        train += ids[n_val:]
    return sorted(train), sorted(val)


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size // 2`` normal and ``batch_size // 2`` abnormal items, ``num_batches`` per epoch.

    Each class is walked through in a fresh random order, cycling when exhausted, so every bag is seen equally
    often; the order depends only on ``seed`` and the epoch count.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_batches: int, seed: int = 0):
        if batch_size < 2 or batch_size % 2:
            raise VadmilError(
                f"data.batch_size must be even and >= 2 (half normal, half abnormal), got {batch_size}"
            )
        labels = np.asarray(labels)
        self.pools = [np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)]
        if any(len(p) == 0 for p in self.pools):
            raise VadmilError("balanced batches need both normal and abnormal training bags")
        self.half, self.num_batches, self.seed, self.epoch = batch_size // 2, num_batches, seed, 0

    def _stream(self, pool: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        reps = math.ceil(n / len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n = self.half * self.num_batches
        normal, abnormal = (self._stream(p, rng, n).reshape(self.num_batches, self.half) for p in self.pools)
        for a, b in zip(abnormal, normal, strict=True):
            yield [*a.tolist(), *b.tolist()]

    def __len__(self) -> int:
        return self.num_batches


class TrainBags(Dataset):
    """Pooled training bags: item ``{"x": [C, S, D], "mask": [S], "label": float, "video_id": str}``.

    ``crops="stack"`` keeps a video's crops together (C = n_crops, averaged inside the model); ``"independent"``
    makes each (video, crop) pair its own bag (C = 1).
    """

    def __init__(self, store, videos, ids, n_segments, short_videos, normalise, crops, cache):
        check_choice("data.crops", crops, CROP_MODES)
        self.store, self.ids, self.crops = store, list(ids), crops
        self.labels = [videos[v].label for v in self.ids]
        self.pool_args = (n_segments, short_videos, normalise)
        n_crops = store.n_crops if crops == "independent" else 1
        self.items = [(i, c) for i in range(len(self.ids)) for c in range(n_crops)]
        self.cache = [self._pool(v) for v in self.ids] if cache else None

    def _pool(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(segments [C, S, D] contiguous, mask [S]): crop-major, so items need no copy before collation."""
        x = self.store.read(video_id)
        if self.store.pooled:  # already segment-pooled at import (Sultani's 32 x 4096 files)
            segments, mask = x, np.ones(len(x), dtype=bool)
        else:
            segments, mask = pool_segments(x, *self.pool_args)
        return np.ascontiguousarray(segments.transpose(1, 0, 2)), mask

    @property
    def item_labels(self) -> list[int]:
        return [self.labels[i] for i, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        i, c = self.items[index]
        x, mask = self.cache[i] if self.cache is not None else self._pool(self.ids[i])
        if self.crops == "independent":
            x = x[c : c + 1]
        return {
            "x": torch.from_numpy(x),  # a view of the cache: collation copies it into the batch
            "mask": torch.from_numpy(mask),
            "label": float(self.labels[i]),
            "video_id": self.ids[i],
        }


class MILDataModule(pl.LightningDataModule):
    """Store + annotations → balanced training bags, a validation split, full-length test videos.

    Args:
        store: path of the feature store.
        train, test: annotations of the training and test videos (id → :class:`VideoLabel`).
        feature_dim: the dimension the config expects (None: take the store's); a mismatch is an error.
        n_segments, short_videos, normalise: segment pooling (see :mod:`vadmil.data.bags`).
        crops: ``stack`` or ``independent``.
        batch_size: bags per training batch (half normal, half abnormal).
        batches_per_epoch: batches per data epoch (None: one pass over the larger class).
        val_fraction, split_seed: the stratified validation split of the training videos.
        cache: pre-pool every training bag in memory at setup (fast epochs; N·C·S·D floats).
        eval_batch_size: videos per validation batch (in split order).
        eval_batch_rows: the most padded rows (videos × crops × longest T) in a test batch; test batches group
            videos of similar length (see :mod:`vadmil.data.eval_batches`).
        val_cache_mb: keep the padded validation batches in memory after the first validation when they take at
            most this many MiB (0: read them at every validation); see :mod:`vadmil.data.eval_cache`.
        end_inclusive, frame_span: the evaluation protocol, for checking test intervals against frame counts.
        streams, fusion, stream_max_gap: the feature streams read, concatenated, and how the model fuses them
            (see :mod:`vadmil.data.streams`; ``[rgb]`` reads the store's features alone).
    """

    def __init__(
        self,
        store: str,
        train: Mapping[str, VideoLabel],
        test: Mapping[str, VideoLabel],
        feature_dim: int | None = None,
        n_segments: int = 32,
        short_videos: str = "repeat",
        normalise: str = "none",
        crops: str = "stack",
        batch_size: int = 60,
        batches_per_epoch: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        sample_seed: int = 0,
        eval_batch_size: int = 8,
        eval_batch_rows: int = DEFAULT_MAX_ROWS,
        num_workers: int = 0,
        cache: bool = True,
        val_cache_mb: float = 2048,
        end_inclusive: bool = True,
        frame_span: str = "video",
        streams: Sequence[str] = ("rgb",),
        fusion: str = "early",
        stream_max_gap: int = 1,
    ):
        super().__init__()
        self.store = FeatureStore(store)
        self.store.check_feature_dim(feature_dim)  # the rgb stream's: dataset.feature_dim
        self.store = open_streams(self.store, streams, stream_max_gap)
        self.fusion = check_fusion(fusion)
        self.train_videos, self.test_videos = dict(train), dict(test)
        self.n_segments, self.short_videos, self.normalise, self.crops = (
            n_segments,
            short_videos,
            normalise,
            crops,
        )
        self.batch_size, self.batches_per_epoch = batch_size, batches_per_epoch
        self.val_fraction, self.split_seed, self.sample_seed = val_fraction, split_seed, sample_seed
        self.eval_batch_size, self.num_workers, self.cache = eval_batch_size, num_workers, cache
        self.eval_batch_rows = eval_batch_rows
        self.val_cache_mb = check_budget(val_cache_mb)
        self._check_ids()
        # Every split (validation is drawn from train) checked now, before any training: shapes, finiteness, intervals.
        self.train_videos = check_split(self.store, self.train_videos, "training", end_inclusive, frame_span)
        self.test_videos = check_split(self.store, self.test_videos, "test", end_inclusive, frame_span)
        self.train_ids, self.val_ids = stratified_split(self.train_videos, val_fraction, split_seed)
        self.test_ids = list(self.test_videos)
        self._check_classes("test", self.test_videos)
        self.train_set: TrainBags | None = None

    @property
    def feature_dim(self) -> int:
        return self.store.feature_dim

    @property
    def n_crops(self) -> int:
        return self.store.n_crops

    @property
    def stream_dims(self) -> dict[str, int]:
        """name → dim of each stream read, in the order of the features' last axis."""
        return stream_dims_of(self.store)

    def _check_ids(self) -> None:
        available = set(self.store.ids())
        for split, videos in (("training", self.train_videos), ("test", self.test_videos)):
            if not videos:
                raise VadmilError(f"the {split} annotations list no videos; check dataset.annotations")
            missing = [v for v in videos if v not in available]
            if missing:
                raise VadmilError(
                    f"{len(missing)} {split} video(s) from the annotations are not in feature store "
                    f"{self.store.path}: {_id_list(missing)}; extract/import them or fix the annotation ids"
                )
        overlap = sorted(set(self.train_videos) & set(self.test_videos))
        if overlap:
            raise VadmilError(f"videos in both the training and test annotations: {_id_list(overlap)}")
        unused = len(available - set(self.train_videos) - set(self.test_videos))
        if unused:
            log.info("%d store videos are in neither split and are not used", unused)

    @staticmethod
    def _check_classes(split: str, videos: Mapping[str, VideoLabel]) -> None:
        labels = {v.label for v in videos.values()}
        for label, kind in ((0, "normal"), (1, "abnormal")):
            if label not in labels:
                raise VadmilError(
                    f"the {split} split has no {kind} video; frame-level metrics need both — check its annotations"
                )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = TrainBags(
                self.store, self.train_videos, self.train_ids, self.n_segments, self.short_videos,
                self.normalise, self.crops, self.cache,
            )  # fmt: skip

    def feature_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std [D] of the training split's snippets (validation videos excluded), as the
        model sees them (after ``normalise``); see :mod:`vadmil.training.standardise`."""
        return feature_statistics(eval_features(self.store.read(v), self.normalise) for v in self.train_ids)

    def _loader(self, dataset, **kw) -> DataLoader:
        return DataLoader(
            dataset, num_workers=self.num_workers, persistent_workers=self.num_workers > 0, **kw
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        labels = self.train_set.item_labels
        half = self.batch_size // 2
        n_batches = self.batches_per_epoch or math.ceil(max(labels.count(0), labels.count(1)) / max(half, 1))
        sampler = BalancedBatchSampler(labels, self.batch_size, n_batches, self.sample_seed)
        return self._loader(self.train_set, batch_sampler=sampler, collate_fn=collate_bags)

    def eval_loader(self, ids: Sequence[str], videos: Mapping[str, VideoLabel] | None = None) -> DataLoader:
        videos = videos or {**self.train_videos, **self.test_videos}
        return video_loader(self.store, videos, ids, self.normalise, self.eval_batch_size, self.num_workers)

    def val_size(self) -> tuple[int, int]:
        """(snippet rows, bytes) of the padded validation batches (see :func:`padded_size`)."""
        return padded_size(self.store, self.val_ids, self.eval_batch_size)

    def val_cached(self) -> bool:
        """Whether validation batches are kept in memory (they fit ``val_cache_mb``)."""
        return fits(self.val_size()[1], self.val_cache_mb)

    def val_dataloader(self) -> CachedBatches:
        return CachedBatches(
            self.eval_loader(self.val_ids, self.train_videos), self.val_size()[1], self.val_cache_mb
        )

    def test_dataloader(self) -> DataLoader:
        """Test videos in length-sorted batches of at most ``eval_batch_rows`` padded rows."""
        return length_batched_loader(self.store, self.test_videos, self.test_ids, self.normalise,
                                     self.eval_batch_rows, self.num_workers)  # fmt: skip

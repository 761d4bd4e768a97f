"""Loaders of full-length videos (validation, test, re-evaluation) and the single-threaded collation of batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from vadmil.data.bags import eval_features, pad_videos
from vadmil.data.labels import VideoLabel
from vadmil.data.store import FeatureStore


class FullVideos(Dataset):
    """Full-length videos for validation and test: item ``{"x": [C, T, D], "label": float, "video_id": str}``."""

    def __init__(
        self, store: FeatureStore, videos: Mapping[str, VideoLabel], ids: Sequence[str], normalise: str
    ):
        self.store, self.videos, self.ids, self.normalise = store, videos, list(ids), normalise

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        v = self.ids[index]
        x = eval_features(self.store.read(v), self.normalise).transpose(1, 0, 2)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(x)),
            "label": float(self.videos[v].label),
            "video_id": v,
        }


def single_threaded(collate):
    """``collate`` run with one intra-op thread. Batching is many separate copies and each parallel copy pays a
    fork/join: on the 2-core benchmark machine, stacking 60 bags of [10, 32, 2048] took 0.48 s with 2 threads
    and 0.09 s with one. (DataLoader workers already run single-threaded.)"""

    def run(items: list[dict]) -> dict:
        threads = torch.get_num_threads()
        if threads == 1:
            return collate(items)
        torch.set_num_threads(1)
        try:
            return collate(items)
        finally:
            torch.set_num_threads(threads)

    return run


collate_bags = single_threaded(default_collate)


@single_threaded
def collate_videos(items: list[dict]) -> dict:
    """Pad full-length videos: x [B, C, T_max, D], mask [B, T_max], label [B], video_id list."""
    x, mask = pad_videos([it["x"] for it in items])
    return {
        "x": x,
        "mask": mask,
        "label": torch.tensor([it["label"] for it in items]),
        "video_id": [it["video_id"] for it in items],
    }


def video_loader(store, videos, ids, normalise, batch_size, num_workers=0) -> DataLoader:
    """Full-length, padded videos ``ids`` for validation, test or re-evaluation (see :func:`collate_videos`)."""
    return DataLoader(
        FullVideos(store, videos, ids, normalise), batch_size=batch_size, collate_fn=collate_videos,
        num_workers=num_workers, persistent_workers=num_workers > 0,
    )  # fmt: skip

"""Snippet-level training data: windows of full-length snippet features, for the heads that learn per snippet
rather than per bag.

- :class:`NormalOnlyDataModule`: the unsupervised heads. Training, validation (calibration and selection) and the
  standardisation statistics see the *normal* videos of the training split only; the features and labels of
  abnormal training videos are never read.
- :class:`PseudoLabelDataModule`: self-training's later stages. Every training video with its snippet
  pseudo-labels, in balanced batches (half normal, half abnormal videos); validation as for MIL heads.
Test data is the MIL data module's, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from vadmil.data.bags import eval_features
from vadmil.data.datamodule import BalancedBatchSampler, MILDataModule, collate_bags
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.training.standardise import feature_statistics


class SnippetWindows(Dataset):
    """Item ``{"x": [C, W, D], "mask": [W], "targets": [W], "label": float, "video_id": str}``: a random window of
    ``window`` consecutive snippets of a video (the whole video, padded, when it is shorter).

    Args:
        targets: id → per-snippet targets [T] (None: all zero, for normal-only training).
        seed: the window positions' seed (one generator per dataset, advanced per item).
    """

    def __init__(self, store: FeatureStore, ids: Sequence[str], labels: Sequence[int], window: int,
                 normalise: str, targets: Mapping[str, np.ndarray] | None = None, seed: int = 0):  # fmt: skip
        if window < 1:
            raise VadmilError(f"training.window must be a positive number of snippets, got {window}")
        self.store, self.ids, self.labels, self.window = store, list(ids), list(labels), window
        self.normalise, self.targets = normalise, targets
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        video_id = self.ids[index]
        x = eval_features(self.store.read(video_id), self.normalise)  # [T, C, D]
        t = len(x)
        y = (
            np.zeros(t, np.float32)
            if self.targets is None
            else np.asarray(self.targets[video_id], np.float32)
        )
        if len(y) != t:
            raise VadmilError(f"pseudo-labels of video '{video_id}' have {len(y)} snippets, its features {t}")
        start = int(self.rng.integers(0, t - self.window + 1)) if t > self.window else 0
        n = min(t, self.window)
        xs = np.zeros((x.shape[1], self.window, x.shape[2]), np.float32)
        xs[:, :n] = x[start : start + n].transpose(1, 0, 2)
        targets, mask = np.zeros(self.window, np.float32), np.zeros(self.window, bool)
        targets[:n], mask[:n] = y[start : start + n], True
        return {
            "x": torch.from_numpy(xs),
            "mask": torch.from_numpy(mask),
            "targets": torch.from_numpy(targets),
            "label": float(self.labels[index]),
            "video_id": video_id,
        }


class _WindowsMixin:
    window: int

    def _batches(self, n_items: int) -> int:
        return self.batches_per_epoch or max(1, -(-n_items // self.batch_size))


class NormalOnlyDataModule(_WindowsMixin, MILDataModule):
    """The training split's normal videos only: training windows, validation videos (for calibration and
    checkpoint selection), standardisation statistics and the snippets statistics heads are fitted on.

    Args (besides :class:`~vadmil.data.datamodule.MILDataModule`'s):
        window: snippets per training window.
    """

    supervision = "none"

    def __init__(self, *args, window: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.window = window
        self.normal_train_ids = [v for v in self.train_ids if self.train_videos[v].label == 0]
        self.normal_val_ids = [v for v in self.val_ids if self.train_videos[v].label == 0]

    def setup(self, stage: str | None = None) -> None:  # no MIL bags: nothing to pre-pool
        pass

    def feature_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        return feature_statistics(
            eval_features(self.store.read(v), self.normalise) for v in self.normal_train_ids
        )

    def train_dataloader(self) -> DataLoader:
        ids = self.normal_train_ids
        dataset = SnippetWindows(
            self.store, ids, [0] * len(ids), self.window, self.normalise, seed=self.sample_seed
        )
        generator = torch.Generator().manual_seed(self.sample_seed)
        n = self._batches(len(ids)) * self.batch_size
        sampler = RandomSampler(dataset, replacement=True, num_samples=n, generator=generator)
        return self._loader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=collate_bags)

    def normal_fit_loader(self) -> DataLoader:
        """Full-length normal training videos, in order: what statistics heads are fitted on."""
        return self.eval_loader(self.normal_train_ids, self.train_videos)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.normal_val_ids, self.train_videos)


class PseudoLabelDataModule(_WindowsMixin, MILDataModule):
    """Training windows of every training video with its snippet pseudo-labels (balanced by video label).

    Args (besides :class:`~vadmil.data.datamodule.MILDataModule`'s):
        pseudo_labels: id → targets [T] for every training video (validation videos need none).
        window: snippets per training window.
    """

    supervision = "weak+pseudo-labels"

    def __init__(self, *args, pseudo_labels: Mapping[str, np.ndarray], window: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.window, self.pseudo_labels = window, pseudo_labels
        missing = [v for v in self.train_ids if v not in pseudo_labels]
        if missing:
            raise VadmilError(f"{len(missing)} training video(s) have no pseudo-labels, e.g. '{missing[0]}'")

    def setup(self, stage: str | None = None) -> None:
        pass

    def train_dataloader(self) -> DataLoader:
        labels = [self.train_videos[v].label for v in self.train_ids]
        dataset = SnippetWindows(self.store, self.train_ids, labels, self.window, self.normalise,
                                 targets=self.pseudo_labels, seed=self.sample_seed)  # fmt: skip
        n_batches = self._batches(max(labels.count(0), labels.count(1)) * 2)
        sampler = BalancedBatchSampler(labels, self.batch_size, n_batches, self.sample_seed)
        return self._loader(dataset, batch_sampler=sampler, collate_fn=collate_bags)


def read_targets(path: str) -> dict[str, np.ndarray]:
    """Pseudo-labels written by self-training (``pseudo_labels.npz``: ``labels/<id>`` float32 [T])."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("labels/")}
    except (OSError, ValueError) as err:
        raise VadmilError(f"cannot read pseudo-labels {path}: {err}") from None


def datamodule_for(cfg) -> tuple[type[MILDataModule], dict]:
    """(data module class, its extra arguments) for ``cfg``: unsupervised heads (``model.normal_only``) get
    :class:`NormalOnlyDataModule`, a self-training stage with ``training.pseudo_labels`` a
    :class:`PseudoLabelDataModule`, everything else MIL bags."""
    training = cfg.get("training") or {}
    window = int(training.get("window", 64))
    if cfg.model.get("normal_only"):
        return NormalOnlyDataModule, {"window": window}
    if training.get("pseudo_labels"):
        return PseudoLabelDataModule, {
            "window": window,
            "pseudo_labels": read_targets(training.pseudo_labels),
        }
    return MILDataModule, {}

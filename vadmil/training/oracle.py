"""The "oracle" (best-on-test) figure, for parity with published numbers only.

Every official trainer of the field picks its checkpoint by evaluating on the test set during training, which leaks
the test set (README, Training data and protocol). vadmil selects on validation; this callback additionally scores the test split every
``every`` validations and remembers the best test value of the dataset's primary metric, so a run can report what
the papers' protocol would have reported. It never influences checkpoint selection, and its time is not counted
in ``fit_seconds``. The validation-selected checkpoint is always a candidate, so the oracle figure is never below
the selected one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from vadmil.data.labels import VideoLabel
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError, check_choice
from vadmil.evaluation.metrics import FRAME_RANKING_METRICS, frame_ranking_metric
from vadmil.evaluation.predict import evaluate_frames, frame_arrays, predict_snippet_scores

ORACLE_LABEL = "oracle: best-on-test checkpoint (leaks the test set; for parity with papers only)"


class OracleTest(pl.Callback):
    """Score the test split every ``every`` validations; keep the checkpoint-free best of ``metric``.

    Built from config (conf/callbacks/oracle.yaml); the test split comes from the trainer's datamodule at setup.

    Args:
        every: validations between test evaluations (0: off).
        metric: the dataset's primary metric (``frame_auc``, ``frame_ap_step`` or ``frame_ap_trapz``).
        protocol: the ``eval`` config (``end_inclusive``, ``frame_span``, ``threshold``).
        store, videos, loader: the test split (store, id → label, full-video loader); default: the trainer's
            datamodule's (``store``, ``test_videos``, ``test_dataloader()``).
    """

    def __init__(self, every: int, metric: str, protocol: Mapping, store: FeatureStore | None = None,
                 videos: Mapping[str, VideoLabel] | None = None, loader: DataLoader | None = None):  # fmt: skip
        check_choice("primary_metric", metric, FRAME_RANKING_METRICS, where="oracle")
        if not isinstance(every, int) or every < 0:
            raise VadmilError(
                f"oracle.every={every}: give a number of validations ≥ 1 (0 disables the oracle)"
            )
        self.store, self.videos, self.loader = store, videos, loader
        self.protocol, self.metric, self.every = dict(protocol), metric, every
        self.n_validations = 0
        self.history: list[tuple[int, int, float]] = []  # (epoch, step, value) of each test evaluation
        self.best: tuple | None = None  # value, epoch, step, scores, frame metrics (None: not computed yet)
        self.seconds = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if self.every and self.store is None and dm is not None:
            self.store, self.videos, self.loader = dm.store, dm.test_videos, dm.test_dataloader()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.n_validations += 1
        if self.every and self.n_validations % self.every == 0:
            self.consider(pl_module, trainer.current_epoch, trainer.global_step)

    def consider(self, module: pl.LightningModule, epoch: int, step: int) -> float:
        """Score the test split with ``module`` and keep it if it is the best so far."""
        start = time.perf_counter()
        # Iterating a DataLoader draws from torch's global generator: fork it, so that scoring the test split
        # leaves training (shuffling, dropout) exactly as it would be without the oracle.
        with torch.random.fork_rng(devices=[]):
            scores = predict_snippet_scores(module, self.loader)
        frames = frame_arrays(
            self.store, self.videos, scores, self.protocol["end_inclusive"], self.protocol["frame_span"]
        )
        value = frame_ranking_metric(
            self.metric,
            torch.from_numpy(np.concatenate([f for f, _ in frames.values()])),
            torch.from_numpy(np.concatenate([y for _, y in frames.values()])),
        )
        self._record(value, epoch, step, scores, None)
        self.seconds += time.perf_counter() - start
        return value

    def consider_selected(self, epoch: int, step: int, scores: dict[str, np.ndarray], metrics: dict) -> float:
        """Add the validation-selected checkpoint, whose test ``scores`` and frame ``metrics`` training has
        already computed (so it is never scored twice)."""
        value = float(metrics[self.metric])
        self._record(value, epoch, step, scores, metrics)
        return value

    def _record(self, value: float, epoch: int, step: int, scores: dict, metrics: dict | None) -> None:
        self.history.append((int(epoch), int(step), value))
        if self.best is None or value > self.best[0]:  # NaN never wins
            self.best = (value, int(epoch), int(step), scores, metrics)

    def summary(self) -> dict:
        """What metrics.json records under ``oracle_test``: every frame metric of the best-on-test checkpoint,
        its epoch and step, the metric it was chosen on, and how many checkpoints were compared."""
        if self.best is None:
            raise VadmilError(
                "oracle: no test evaluation happened; call consider_selected() with the selected checkpoint"
            )
        value, epoch, step, scores, metrics = self.best
        if metrics is None:
            p = self.protocol
            metrics = evaluate_frames(
                self.store, self.videos, scores, p["end_inclusive"], p["frame_span"], p["threshold"]
            )
        return {
            "label": ORACLE_LABEL,
            "chosen_on": self.metric,
            **metrics,
            "epoch": epoch,
            "step": step,
            "every_n_validations": self.every,
            "n_evaluations": len(self.history),
            "seconds": round(self.seconds, 3),
        }

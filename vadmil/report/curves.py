"""Curves for the HTML page, from a run's ``predictions.npz`` alone.

``predictions.npz`` (written by `vadmil train`) holds, per test video id, ``frame_scores/<id>`` float32 [F] and
``frame_labels/<id>`` uint8 [F]: the frames the test metrics were computed on. Runs written before these keys
existed have only ``snippet_scores/<id>``; they get no curves (the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vadmil.rundir import RunDir, read_frame_predictions


@dataclass
class Predictions:
    """Per-video frame scores and labels of one run, in video-id order."""

    scores: dict[str, np.ndarray]  # id → float32 [F]
    labels: dict[str, np.ndarray]  # id → uint8 [F]

    def concatenated(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores [ΣF], labels [ΣF]) over all videos (sorted ids; the order does not change a curve)."""
        ids = sorted(self.scores)
        return np.concatenate([self.scores[i] for i in ids]), np.concatenate([self.labels[i] for i in ids])


def load_predictions(run_dir: Path) -> Predictions | None:
    """The run's frame scores and labels, or None when ``predictions.npz`` is missing, damaged or predates them."""
    try:
        scores, labels = read_frame_predictions(RunDir(run_dir).predictions)
    except Exception:  # any damage (truncated zip, bad member): no curves, never a failed report
        return None
    if not scores or set(scores) != set(labels):
        return None
    return Predictions(scores, labels)


def _threshold_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) [K] at each distinct score, highest score first."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    s, y = scores[order], labels[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]
    return tp, (last + 1) - tp


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate), from (0, 0) to (1, 1); empty when a class is missing."""
    tp, fp = _threshold_counts(scores, labels)
    if tp[-1] == 0 or fp[-1] == 0:
        return np.empty(0), np.empty(0)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, recall rising; empty without positives."""
    tp, fp = _threshold_counts(scores, labels)
    if tp[-1] == 0:
        return np.empty(0), np.empty(0)
    return tp / tp[-1], tp / (tp + fp)


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve, evenly spaced along its index, first and last kept."""
    if len(x) <= max_points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(np.int64))
    return x[keep], y[keep]


def intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """Anomalous frame runs of a 0/1 vector as half-open [start, stop) pairs."""
    edges = np.diff(np.r_[0, labels.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def pick_videos(predictions: Predictions, n: int, requested: list[str] | None = None) -> list[str]:
    """Videos whose score curves are drawn: ``requested`` ones present in the predictions, else ``n`` spread over
    the sorted ids — abnormal ones (any anomalous frame) first, and one normal video when ``n`` ≥ 2."""
    if requested:
        return [v for v in requested if v in predictions.scores]
    ids = sorted(predictions.scores)
    abnormal = [v for v in ids if predictions.labels[v].any()]
    normal = [v for v in ids if not predictions.labels[v].any()]
    n_normal = min(len(normal), 1 if n >= 2 else 0)
    chosen = _spread(abnormal, n - n_normal) + _spread(normal, n_normal)
    return chosen + _spread([v for v in ids if v not in chosen], n - len(chosen))


def _spread(items: list[str], n: int) -> list[str]:
    if n <= 0 or not items:
        return []
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]

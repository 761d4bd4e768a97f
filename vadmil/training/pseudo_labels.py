"""Snippet pseudo-labels from a trained model's scores on the *training* videos, for self-training
(:mod:`vadmil.training.self_training`).

Every snippet of a normal video is 0 (its video label says so). In an abnormal video the scores are optionally
smoothed by a moving average and min-max normalised within the video (MIST, Feng et al., CVPR 2021, refines its
generator's scores this way before using them as clip labels), then labelled by one rule:

- ``threshold``: 1 where the score is at least ``threshold``;
- ``top_fraction``: 1 for the ``ceil(top_fraction · T)`` highest-scoring snippets (Zhong et al., CVPR 2019, trust
  the classifier's most confident snippets of abnormal videos);
- ``kmeans``: 2-means of the video's scores (exact in 1-D: the split of the sorted scores with the least
  within-cluster sum of squares); the cluster with the higher mean is 1.

Since an abnormal video contains an anomaly, at least ``min_positive`` snippets (its highest) are 1 whatever the
rule says. Ground truth is never an input: :func:`agreement` compares labels with it afterwards, for the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import VideoLabel, frame_labels
from vadmil.errors import VadmilError, check_choice

RULES = ("threshold", "top_fraction", "kmeans")


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` snippets (shorter at the ends, never padded with zeros)."""
    if window <= 1 or len(scores) < 2:
        return scores
    kernel = np.ones(window)
    return np.convolve(scores, kernel, "same") / np.convolve(np.ones_like(scores), kernel, "same")


def two_means(scores: np.ndarray) -> np.ndarray:
    """Boolean [T]: the upper cluster of the exact 1-D 2-means of ``scores`` (all False when they are equal)."""
    order = np.argsort(scores, kind="stable")
    x = scores[order].astype(np.float64)
    n = len(x)
    if n < 2 or x[0] == x[-1]:
        return np.zeros(n, bool)
    csum, csq = np.cumsum(x), np.cumsum(x * x)
    i = np.arange(1, n)  # lower cluster = the i smallest
    sse_low = csq[i - 1] - csum[i - 1] ** 2 / i
    sse_high = (csq[-1] - csq[i - 1]) - (csum[-1] - csum[i - 1]) ** 2 / (n - i)
    cut = int(i[np.argmin(sse_low + sse_high)])
    out = np.zeros(n, bool)
    out[order[cut:]] = True
    return out


def label_scores(scores: np.ndarray, rule: str = "top_fraction", threshold: float = 0.5, top_fraction: float = 0.2,
                 smooth_window: int = 1, normalise: bool = False, min_positive: int = 1) -> np.ndarray:  # fmt: skip
    """0/1 float32 pseudo-labels [T] of one abnormal video's snippet ``scores`` [T] (see the module doc)."""
    check_choice("training.rule", rule, RULES)
    if not 0.0 < top_fraction <= 1.0:
        raise VadmilError(f"training.top_fraction must be in (0, 1], got {top_fraction}")
    s = smooth(np.asarray(scores, np.float64), int(smooth_window))
    if normalise and len(s) and s.max() > s.min():
        s = (s - s.min()) / (s.max() - s.min())
    if rule == "threshold":
        positive = s >= threshold
    elif rule == "top_fraction":
        positive = np.zeros(len(s), bool)
        positive[np.argsort(-s, kind="stable")[: math.ceil(top_fraction * len(s))]] = True
    else:
        positive = two_means(s)
    if positive.sum() < min_positive:
        positive[np.argsort(-s, kind="stable")[:min_positive]] = True
    return positive.astype(np.float32)


def make_pseudo_labels(scores: Mapping[str, np.ndarray], videos: Mapping[str, VideoLabel], **rule) -> dict:
    """id → pseudo-labels [T] for every video of ``scores``; ``videos`` are the *training* annotations (only their
    video-level labels are read)."""
    missing = [v for v in scores if v not in videos]
    if missing:
        raise VadmilError(
            f"pseudo-labels: '{missing[0]}' is not a training video; only training videos are labelled"
        )
    return {
        v: np.zeros(len(s), np.float32) if videos[v].label == 0 else label_scores(s, **rule)
        for v, s in scores.items()
    }


def snippet_truth(video: VideoLabel, n_frames: int, n_snippets: int, geometry: SnippetGeometry,
                  end_inclusive: bool) -> np.ndarray | None:  # fmt: skip
    """Ground truth per snippet [T] (1 when at least half its frames are anomalous), or None without frame
    annotations."""
    if video.label == 1 and not video.intervals and video.mask is None:
        return None
    frames = frame_labels(video, n_frames, end_inclusive=end_inclusive).astype(np.float64)
    starts = np.arange(n_snippets) * geometry.stride
    csum = np.concatenate([[0.0], np.cumsum(frames)])
    stops = np.minimum(starts + geometry.length, n_frames)
    starts = np.minimum(starts, n_frames)
    covered = np.maximum(stops - starts, 1)
    return ((csum[stops] - csum[starts]) / covered >= 0.5).astype(np.float32)


def agreement(labels: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray | None]) -> dict:
    """Agreement of pseudo-labels with snippet ground truth over the abnormal videos that have it (normal videos
    agree by construction): accuracy, precision, recall, F1 and how many videos and snippets were compared."""
    pairs = [(labels[v], t) for v, t in truth.items() if t is not None]
    if not pairs:
        return {"n_videos": 0, "note": "no frame annotations for the abnormal training videos"}
    y = np.concatenate([p for p, _ in pairs]) > 0.5
    t = np.concatenate([t for _, t in pairs]) > 0.5
    tp, fp, fn = int((y & t).sum()), int((y & ~t).sum()), int((~y & t).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {
        "n_videos": len(pairs),
        "n_snippets": int(len(y)),
        "accuracy": float((y == t).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pseudo_positive_rate": float(y.mean()),
        "true_positive_rate": float(t.mean()),
    }

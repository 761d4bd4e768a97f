"""Evaluation metrics: frame-level test metrics and the video-level AUC used for model selection.

Conventions (README, Training data and protocol):

- All frame metrics are computed over the concatenation of every test video's frames, never averaged per video.
- ``frame_auc``: exact ROC-AUC (no threshold binning) over all frames.
- ``frame_ap_step``: step-wise average precision, ``sum_n (R_n - R_{n-1}) P_n`` — scikit-learn's
  ``average_precision_score`` (VadCLIP's number).
- ``frame_ap_trapz``: trapezoidal area under the precision-recall curve — ``auc(recall, precision)`` on
  ``precision_recall_curve`` (XDVioDet, RTFM, MGFN, UR-DMU's number). The two differ; report which one.
- ``frame_auc_abnormal``: ROC-AUC over the concatenated frames of the abnormal videos only.
- ``far``: false-alarm rate = fraction of the frames of normal videos whose score is ``>= threshold``
  (a score exactly at the threshold counts as an alarm; compared in the scores' dtype).
- NaN policy: a metric that is undefined on the data is ``float("nan")``, never 0, and nothing raises: AUC and AP
  need both frame classes; ``far`` needs a normal video; ``frame_auc_abnormal`` needs an abnormal video whose
  frames hold both classes. Computing with no update at all raises :class:`VadmilError`.
- Scores must be probabilities in [0, 1]: torchmetrics silently applies a sigmoid to a batch holding values outside
  [0, 1], which would mix logits and probabilities without a word, so we refuse such input instead.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
)

from vadmil.errors import VadmilError, check_choice

__all__ = ["FRAME_RANKING_METRICS", "FrameAnomalyMetrics", "VideoAUC", "frame_ranking_metric"]


def _check_probabilities(scores: Tensor, labels: Tensor, what: str) -> None:
    """Raise VadmilError unless ``scores`` [N] are finite floats in [0, 1] and ``labels`` [N] are 0/1."""
    if scores.ndim != 1 or scores.shape != labels.shape:
        msg = f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must be 1-D of equal length"
        raise VadmilError(f"{what}: {msg}; pass one value per frame (or per video).")
    # NaN fails both comparisons, so this one test also rejects NaN and ±inf.
    if not scores.is_floating_point() or not bool(((scores >= 0) & (scores <= 1)).all()):
        raise VadmilError(
            f"{what}: scores must be probabilities (finite, in [0, 1]); apply a sigmoid to logits."
        )
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise VadmilError(f"{what}: labels must be 0 (normal) or 1 (anomalous); fix the annotations.")


def _cat(state: list[Tensor] | Tensor) -> Tensor | None:
    """Concatenate a list state; after a DDP sync torchmetrics has already turned it into one tensor."""
    if isinstance(state, Tensor):
        return state
    return torch.cat(state) if state else None


def _store(metric: Metric, scores: Tensor, labels: Tensor) -> None:
    # float64 input stays exact; lower precisions widen losslessly to float32, so ties are preserved.
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    metric.scores.append(scores.detach().to(device=metric.device, dtype=dtype))
    metric.labels.append(labels.detach().to(device=metric.device, dtype=torch.long))


def _gathered(metric: Metric, what: str) -> tuple[Tensor, Tensor]:
    scores, labels = _cat(metric.scores), _cat(metric.labels)
    if scores is None or scores.numel() == 0:
        raise VadmilError(f"{what}: no video was added; call update() before compute().")
    return scores, labels


def _has_both_classes(labels: Tensor) -> bool:
    return labels.numel() > 0 and 0 < int(labels.sum()) < labels.numel()


def _auc(scores: Tensor, labels: Tensor) -> float:
    # thresholds=None → exact curve (binned variants are 30-100x slower); inputs were validated in update().
    if not _has_both_classes(labels):
        return float("nan")
    return float(binary_auroc(scores, labels, thresholds=None, validate_args=False))


def _ap_step(scores: Tensor, labels: Tensor) -> float:
    if not _has_both_classes(labels):
        return float("nan")
    return float(binary_average_precision(scores, labels, thresholds=None, validate_args=False))


def _ap_trapz(scores: Tensor, labels: Tensor) -> float:
    if not _has_both_classes(labels):
        return float("nan")
    precision, recall, _ = binary_precision_recall_curve(scores, labels, thresholds=None, validate_args=False)
    # Recall runs from 1 down to 0, so the signed trapezoid is negative; float64 to keep 1e-7 agreement.
    return float(-torch.trapz(precision.double(), recall.double()))


FRAME_RANKING_METRICS = {"frame_auc": _auc, "frame_ap_step": _ap_step, "frame_ap_trapz": _ap_trapz}


def frame_ranking_metric(name: str, scores: Tensor, labels: Tensor) -> float:
    """One frame metric (``frame_auc``, ``frame_ap_step`` or ``frame_ap_trapz``) of concatenated frames
    ``scores`` [F] (probabilities) and ``labels`` [F] (0/1), exactly as :class:`FrameAnomalyMetrics` computes it,
    without the other curves (for repeated evaluation, e.g. the oracle figure)."""
    check_choice("frame metric", name, FRAME_RANKING_METRICS)
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    _check_probabilities(scores, labels, "frame_ranking_metric")
    return FRAME_RANKING_METRICS[name](scores, labels.long())


class FrameAnomalyMetrics(Metric):
    """Frame-level test metrics over all test videos concatenated (see the module docstring for conventions).

    Call :meth:`update` once per video; :meth:`compute` returns a dict of floats (counts as ints).
    """

    is_differentiable = False
    higher_is_better = None  # mixed: AUC/AP up, FAR down
    full_state_update = False

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(threshold) <= 1.0:
            raise VadmilError(f"FrameAnomalyMetrics: threshold={threshold} must lie in [0, 1].")
        self.threshold = float(threshold)
        # List states with "cat" reduction: every rank's frames are gathered, so DDP gives the exact global metric.
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("video_labels", default=[], dist_reduce_fx="cat")  # [V], one entry per update
        self.add_state("video_lengths", default=[], dist_reduce_fx="cat")  # [V], frames per video

    def update(self, scores: Tensor, labels: Tensor, video_label: int) -> None:
        """Add one video: ``scores`` [F] probabilities, ``labels`` [F] 0/1, ``video_label`` 0 normal / 1 abnormal."""
        scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
        _check_probabilities(scores, labels, "FrameAnomalyMetrics.update")
        if scores.numel() == 0:
            raise VadmilError(
                "FrameAnomalyMetrics.update: the video has no frames; drop it or fix its scores."
            )
        video_label = int(video_label)
        if video_label not in (0, 1):
            raise VadmilError(f"FrameAnomalyMetrics.update: video_label={video_label} must be 0 or 1.")
        if video_label == 0 and bool(labels.any()):
            raise VadmilError(
                "FrameAnomalyMetrics.update: a normal video has anomalous frames; fix its labels."
            )
        _store(self, scores, labels)
        self.video_labels.append(torch.tensor([video_label], device=self.device))
        self.video_lengths.append(torch.tensor([scores.numel()], device=self.device))

    def compute(self) -> dict[str, float]:
        """Return the metrics named in the module docstring plus ``n_videos``, ``n_abnormal_videos``, ``n_frames``."""
        scores, labels = _gathered(self, "FrameAnomalyMetrics.compute")  # [F], [F]
        video_labels, lengths = _cat(self.video_labels), _cat(self.video_lengths)  # [V], [V]
        abnormal = torch.repeat_interleave(video_labels, lengths) == 1  # [F]: frame of an abnormal video
        nan = float("nan")
        # Exact curves (no threshold binning); inputs were validated in update().
        ap_step, ap_trapz = _ap_step(scores, labels), _ap_trapz(scores, labels)

        normal_scores = scores[~abnormal]
        # Ties count as alarms (>=), as a detector firing at "score >= t" would; the comparison runs in the scores'
        # dtype, so a float32 score 0.3 is "at" a threshold of 0.3.
        far = float((normal_scores >= self.threshold).double().mean()) if normal_scores.numel() else nan
        return {
            "frame_auc": _auc(scores, labels),
            "frame_ap_step": ap_step,
            "frame_ap_trapz": ap_trapz,
            "frame_auc_abnormal": _auc(scores[abnormal], labels[abnormal]),
            "far": far,
            "n_videos": int(video_labels.numel()),
            "n_abnormal_videos": int(video_labels.sum()),
            "n_frames": int(scores.numel()),
        }


class VideoAUC(Metric):
    """Video-level ROC-AUC for model selection on the validation split (e.g. max snippet score vs video label).

    ``update(video_scores [B] in [0, 1], video_labels [B] 0/1)``; ``compute()`` → scalar tensor, NaN with one class.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, video_scores: Tensor, video_labels: Tensor) -> None:
        """Add a batch: ``video_scores`` [B] probabilities, ``video_labels`` [B] 0/1."""
        video_scores, video_labels = torch.as_tensor(video_scores), torch.as_tensor(video_labels)
        _check_probabilities(video_scores, video_labels, "VideoAUC.update")
        _store(self, video_scores, video_labels)

    def compute(self) -> Tensor:
        """Return the ROC-AUC as a 0-d tensor (float32 on the metric's device); NaN when only one class was seen."""
        scores, labels = _gathered(self, "VideoAUC.compute")
        return torch.tensor(_auc(scores, labels), dtype=torch.float32, device=self.device)

"""Frame AUC per anomaly category: where a head finds which kind of anomaly.

``frame_auc_by_category`` maps each category of the abnormal test videos (the annotation's ``category``: UCF-Crime's
class names, XD-Violence's label codes, the synthetic set's anomaly types) to the frame ROC-AUC over the
concatenated frames of that category's videos plus ALL normal test videos. Normal videos share the negatives of
every category, so the numbers compare across categories. A data set whose abnormal test videos carry no category
gives an empty mapping, and `metrics.json` then has no ``frame_auc_by_category`` key. Undefined values (no
normal video, or no anomalous frame in the category) are NaN, as for the other frame metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from vadmil.data.labels import VideoLabel
from vadmil.evaluation.metrics import FRAME_RANKING_METRICS

KEY = "frame_auc_by_category"


def frame_auc_by_category(
    frames: Mapping[str, tuple[np.ndarray, np.ndarray]], videos: Mapping[str, VideoLabel]
) -> dict[str, float]:
    """category → frame AUC of its abnormal videos plus every normal video, sorted by category.

    ``frames``: id → (frame scores [F], frame labels [F]) as :func:`vadmil.evaluation.predict.frame_arrays` gives.
    """
    normal = [v for v in frames if videos[v].label == 0]
    by_category: dict[str, list[str]] = {}
    for video_id in frames:
        video = videos[video_id]
        if video.label == 1 and video.category:
            by_category.setdefault(video.category, []).append(video_id)
    out = {}
    for category in sorted(by_category):
        ids = by_category[category] + normal
        scores = torch.from_numpy(np.concatenate([frames[v][0] for v in ids]).astype(np.float64))
        labels = torch.from_numpy(np.concatenate([frames[v][1] for v in ids]).astype(np.int64))
        out[category] = FRAME_RANKING_METRICS["frame_auc"](scores, labels)
    return out

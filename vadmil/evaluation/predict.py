"""Test-time scoring: snippet scores per video, expansion to frames, frame-level metrics."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from vadmil.data.bags import segment_bounds
from vadmil.data.labels import VideoLabel, frame_labels
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError, check_choice
from vadmil.evaluation.categories import KEY as CATEGORY_KEY
from vadmil.evaluation.categories import frame_auc_by_category
from vadmil.evaluation.metrics import FrameAnomalyMetrics
from vadmil.training.module import MILModule

FRAME_SPANS = ("video", "snippets")


@torch.inference_mode()
def predict_snippet_scores(module: MILModule, loader: DataLoader) -> dict[str, np.ndarray]:
    """Crop-averaged snippet scores of every video in ``loader``: id → float32 [T]."""
    module.eval()
    out = {}
    for batch in loader:
        x, mask = batch["x"].to(module.device), batch["mask"].to(module.device)
        scores = module(x, mask).video_scores.float().cpu()
        for i, video_id in enumerate(batch["video_id"]):
            out[video_id] = scores[i, : int(mask[i].sum())].numpy()
    return out


def frame_scores(
    store: FeatureStore, video_id: str, scores: np.ndarray, frame_span: str = "video"
) -> torch.Tensor:
    """Snippet (or pooled-segment) scores [T] → frame scores from the store's geometry.

    ``frame_span="video"`` covers the true decoded frames (``n_frames``); ``"snippets"`` covers T·stride frames,
    each snippet repeated ``stride`` times (the published repos' convention, whose tail depends on T).
    """
    check_choice("eval.frame_span", frame_span, FRAME_SPANS)
    scores_t = torch.as_tensor(scores, dtype=torch.float32)
    if store.pooled:  # segments split the whole video evenly
        n_frames = store.n_frames(video_id)
        widths = np.diff(segment_bounds(n_frames, len(scores)))
        return torch.repeat_interleave(scores_t, torch.from_numpy(widths))
    geometry = store.geometry
    if frame_span == "snippets":
        return torch.repeat_interleave(scores_t, geometry.stride)
    return geometry.expand(scores_t, store.n_frames(video_id))


def evaluate_module(module: MILModule, store: FeatureStore, videos: Mapping[str, VideoLabel], loader: DataLoader,
                    protocol: Mapping) -> tuple[dict[str, float], dict[str, np.ndarray], dict]:  # fmt: skip
    """Score every video of ``loader`` and compute the frame metrics under ``protocol`` (the ``eval`` config:
    end_inclusive, frame_span, threshold). Training and `vadmil eval` both go through here, so they agree.
    Where the test videos have categories, the metrics also hold ``frame_auc_by_category``
    (:mod:`vadmil.evaluation.categories`).

    Returns (metrics, snippet scores id → [T], frames id → (frame scores [F], frame labels [F]))."""
    scores = predict_snippet_scores(module, loader)
    frames = frame_arrays(store, videos, scores, protocol["end_inclusive"], protocol["frame_span"])
    metrics: dict = frame_metrics(frames, videos, protocol["threshold"])
    by_category = frame_auc_by_category(frames, videos)
    if by_category:
        metrics[CATEGORY_KEY] = by_category
    return metrics, scores, frames


def evaluate_frames(
    store: FeatureStore,
    videos: Mapping[str, VideoLabel],
    snippet_scores: Mapping[str, np.ndarray],
    end_inclusive: bool = True,
    frame_span: str = "video",
    threshold: float = 0.5,
) -> dict[str, float]:
    """Frame-level test metrics over all videos concatenated (see :class:`FrameAnomalyMetrics`)."""
    frames = frame_arrays(store, videos, snippet_scores, end_inclusive, frame_span)
    return frame_metrics(frames, videos, threshold)


def frame_metrics(
    frames: Mapping[str, tuple[np.ndarray, np.ndarray]],
    videos: Mapping[str, VideoLabel],
    threshold: float = 0.5,
) -> dict[str, float]:
    """The frame metrics of :func:`frame_arrays`' output (id → (scores [F], labels [F]))."""
    metric = FrameAnomalyMetrics(threshold=threshold)
    for video_id, (scores, labels) in frames.items():
        metric.update(torch.from_numpy(scores), torch.from_numpy(labels), videos[video_id].label)
    return metric.compute()


def frame_arrays(
    store: FeatureStore,
    videos: Mapping[str, VideoLabel],
    snippet_scores: Mapping[str, np.ndarray],
    end_inclusive: bool = True,
    frame_span: str = "video",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """id → (frame scores float32 [F], frame labels uint8 [F]) of every video in ``videos``, in its order: what
    the frame metrics are computed on (and what `vadmil report` plots)."""
    missing = [v for v in videos if v not in snippet_scores]
    if missing:
        raise VadmilError(
            f"no scores for {len(missing)} test video(s), e.g. '{missing[0]}'; score every test video"
        )
    out = {}
    for video_id, video in videos.items():
        frames = frame_scores(store, video_id, snippet_scores[video_id], frame_span).numpy()
        out[video_id] = frames, frame_labels(video, len(frames), end_inclusive=end_inclusive)
    return out

"""Checks of a split against the feature store, run when the data module is built (before any training) and by
`vadmil eval`: a bad test video stops the run in seconds rather than after the fit.

Per video: features of shape [T >= 1, n_crops, feature_dim] (the store's), finite, a frame count; per abnormal
video: intervals inside the frames the metrics cover. An interval running past the last frame is clipped (one
warning counting them); one wholly past it is an error naming the video, and so is an abnormal test video left
with no anomalous frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from vadmil.data.labels import VideoLabel, frame_labels
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

log = logging.getLogger("vadmil.data")
ROWS = 4096  # snippets read at a time when checking finiteness (bounded memory for long videos)


def eval_frames(store: FeatureStore, video_id: str, n_snippets: int, frame_span: str = "video") -> int:
    """How many frames the metrics cover for a video (see :func:`vadmil.evaluation.predict.frame_scores`)."""
    if frame_span == "snippets" and not store.pooled:
        return n_snippets * store.geometry.stride
    return store.n_frames(video_id)


def _check_features(store: FeatureStore, video_id: str, split: str) -> int:
    """Shape and finiteness of one video's features; returns its snippet count T."""
    features = store.features(video_id)
    expected = (store.n_crops, store.feature_dim)
    if features.ndim != 3 or features.shape[1:] != expected or features.shape[0] < 1:
        raise VadmilError(
            f"{split} video '{video_id}' in feature store {store.path} has features of shape {features.shape}, "
            f"not [T, {expected[0]}, {expected[1]}] like the store's other videos (crops, dim); re-extract or "
            "re-import it"
        )
    for start in range(0, features.shape[0], ROWS):
        if not np.isfinite(features[start : start + ROWS]).all():
            store.read(video_id)  # raises, naming the video and counting the bad snippets
    if "n_frames" not in store.info(video_id):
        raise VadmilError(
            f"{split} video '{video_id}' in feature store {store.path} records no frame count (n_frames); "
            "re-extract or re-import it"
        )
    return int(features.shape[0])


def _clip(video: VideoLabel, n_frames: int, end_inclusive: bool, split: str) -> tuple[VideoLabel, int]:
    """The video with its intervals clipped to its frames, and how many were clipped."""
    last = n_frames - 1 if end_inclusive else n_frames  # the largest valid interval end
    clipped = 0
    pairs = []
    for s, e in video.intervals:
        if s >= n_frames:
            raise VadmilError(
                f"{split} video '{video.video_id}': its anomalous interval {s}-{e} starts past its last frame "
                f"({n_frames} frames); fix the interval in the annotation file, or the video's id"
            )
        clipped += e > last
        pairs.append((s, min(e, last)))
    if not clipped:
        return video, 0
    return VideoLabel(video.video_id, video.label, tuple(pairs), video.mask, video.category), clipped


def check_split(
    store: FeatureStore,
    videos: Mapping[str, VideoLabel],
    split: str,
    end_inclusive: bool = True,
    frame_span: str = "video",
) -> dict[str, VideoLabel]:
    """Check every video of ``split`` (see the module docstring); returns the labels with intervals clipped to
    the frames. Ids must already be known to be in the store."""
    out, n_clipped, n_videos = {}, 0, 0
    for video_id, video in videos.items():
        n_snippets = _check_features(store, video_id, split)
        if video.label and video.intervals and video.mask is None:
            video, clipped = _clip(
                video, eval_frames(store, video_id, n_snippets, frame_span), end_inclusive, split
            )
            n_clipped, n_videos = n_clipped + clipped, n_videos + bool(clipped)
        if split == "test" and video.label:
            n = eval_frames(store, video_id, n_snippets, frame_span)
            if not frame_labels(video, n, end_inclusive=end_inclusive).any():  # also: no annotation at all
                raise VadmilError(
                    f"abnormal test video '{video_id}' has no anomalous frame within its {n} frames; fix its "
                    "intervals or label in the annotation file"
                )
        out[video_id] = video
    if n_clipped:
        log.warning(
            "%d anomalous interval(s) of %d %s video(s) run past the video's last frame; clipped to it",
            n_clipped, n_videos, split,
        )  # fmt: skip
    return out

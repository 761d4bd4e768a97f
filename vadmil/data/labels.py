"""Video labels, video ids and frame ground truth.

A :class:`VideoLabel` is what every annotation parser (:mod:`vadmil.data.annotations`) returns per video; ids are
normalised (:func:`normalise_video_id`) so annotation files, feature files and store entries join on one id.
Frame ground truth is rebuilt from the intervals and each video's true frame count (:func:`frame_labels`),
never taken from released concatenated vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vadmil.errors import VadmilError

_EXTENSIONS = {"mp4", "avi", "mkv", "mov", "webm", "mpg", "mpeg", "m4v", "wmv", "flv", "npy", "txt"}
# Public feature layouts: Wu `<video>__<crop>.npy` and `__vggish.npy`, RTFM `<video>_i3d.npy`, Sultani
# `<video>_C.txt`; stripping these lets list files of feature paths join annotations by video id.
_FEATURE_SUFFIX = re.compile(r"(__vggish|__\d+|_i3d|_C)$")


@dataclass(frozen=True, eq=False)
class VideoLabel:
    """Labels of one video: ``label`` 0 normal / 1 abnormal; ``intervals`` anomalous frame ranges (start, end)
    as the source writes them; ``mask`` per-frame 0/1 uint8 [F], used instead of intervals when set;
    ``category`` the class name as the source gives it ("Abuse", "Normal", "B1-G", ...)."""

    video_id: str
    label: int
    intervals: tuple[tuple[int, int], ...] = ()
    mask: np.ndarray | None = None
    category: str = ""

    def __post_init__(self):
        # Canonical immutable values (JSON gives lists, numpy np.int64) so duplicate entries compare equal.
        object.__setattr__(self, "label", int(self.label))
        object.__setattr__(self, "intervals", tuple((int(s), int(e)) for s, e in self.intervals))
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(np.uint8)  # a copy: the caller's array can't change it later
            mask.setflags(write=False)
            object.__setattr__(self, "mask", mask)

    def _key(self):
        mask = None if self.mask is None else self.mask.tobytes()
        return self.video_id, self.label, self.intervals, self.category, mask

    def __eq__(self, other):
        return isinstance(other, VideoLabel) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


def normalise_video_id(name: str) -> str:
    """Stable id from a path or file name: basename, minus one known extension, minus one feature suffix."""
    base = re.split(r"[/\\]", str(name).strip())[-1]
    stem, dot, ext = base.rpartition(".")
    if dot and ext.lower() in _EXTENSIONS:  # only known extensions: XD names contain dots
        base = stem
    base = _FEATURE_SUFFIX.sub("", base)
    if base in ("", ".", ".."):  # "." and ".." are not HDF5 names: such a video would wedge the store
        raise VadmilError(f"cannot derive a video id from '{name}'; name each file <video_id>.<ext>")
    return base


def frame_labels(video: VideoLabel, n_frames: int, end_inclusive: bool = True) -> np.ndarray:
    """Frame ground truth, uint8 [n_frames]: intervals ``s..e`` (``s..e-1`` when not ``end_inclusive``)
    clipped to the video, or the mask truncated / zero-padded to ``n_frames``."""
    out = np.zeros(n_frames, dtype=np.uint8)
    if video.label == 0:
        if video.intervals or (video.mask is not None and video.mask.any()):
            raise VadmilError(
                f"video {video.video_id} is labelled normal but has anomalous frames; "
                "fix its label or its intervals"
            )
        return out
    if video.mask is not None:
        k = min(n_frames, len(video.mask))
        out[:k] = video.mask[:k]
        return out
    if not video.intervals:
        raise VadmilError(
            f"abnormal video {video.video_id} has no temporal annotation; frame-level evaluation needs one "
            "— add its intervals to the annotation file"
        )
    iv = np.asarray(video.intervals, dtype=np.int64)
    starts = np.clip(iv[:, 0], 0, n_frames)
    stops = np.clip(iv[:, 1] + int(end_inclusive), 0, n_frames)
    keep = stops > starts
    # +1 at each start, -1 after each end: a frame is anomalous where the running sum is positive.
    delta = np.zeros(n_frames + 1, dtype=np.int64)
    np.add.at(delta, starts[keep], 1)
    np.add.at(delta, stops[keep], -1)
    out[np.cumsum(delta[:-1]) > 0] = 1
    return out


def split_counts(videos: dict[str, VideoLabel]) -> tuple[int, int]:
    """(n_normal, n_abnormal)."""
    n_abnormal = sum(v.label == 1 for v in videos.values())
    return len(videos) - n_abnormal, n_abnormal

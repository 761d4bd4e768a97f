"""Sequential video decoding, checked against the file's own timestamps, with three interchangeable backends.

``open_video(path)`` probes a video (:mod:`vadmil.extract.probe`: a demux pass, no decoding), checks its
integrity, opens a backend (:mod:`vadmil.extract.readers`: ``decord`` by default, ``pyav``, ``opencv``) and
returns a :class:`DecodedVideo`; ``DecodedVideo.chunks()`` then decodes it front to back and yields RGB uint8
arrays ``[n, H, W, 3]``. Frames are never fetched per clip by random access (decord's random-access clip fetching
is about 5x slower than a sequential pass); snippets are cut from the sequential stream by
:class:`vadmil.extract.snippets.SnippetAssembler`.

One frame count for every backend: the real frames are the probe's (non-empty packets that the container does
not discard), and every backend yields exactly those, so ``info.n_frames`` is known, and equal for every
backend, before any frame is decoded. A decoder that yields fewer (or, with PyAV, skips a timestamp) fails the
video when its decoding ends. Pixel values differ slightly between backends (each uses its own YUV -> RGB
conversion and, with ``resize``, its own scaler: decord uses FFmpeg's scale filter, PyAV swscale bilinear,
OpenCV ``INTER_LINEAR``), so features are reproducible only with the same backend.

Times: :attr:`DecodedVideo.times` holds each output frame's presentation time in seconds from the first frame,
from the stream's timestamps (``info.time_source``), so variable-rate files and files whose header states a wrong
rate get true times; ``info.fps`` is the stated rate when the timestamps agree with it, else frames / duration.

Integrity (``integrity=``): ``strict`` (default) refuses a file whose container declares more frames, or a longer
duration, than its packets and timestamps hold (beyond ``tolerance`` frames) — a truncated or partly zeroed file —
naming what was expected and found; ``warn`` logs the problems, keeps them in :attr:`DecodedVideo.problems`
and decodes the frames that are there; ``off`` skips these checks. Decoding failures are errors in every mode.

``target_fps`` resamples by frame selection on the timestamps: output frame ``i`` is the source frame nearest to
``i / target_fps`` seconds (ties to the later one; on a constant-rate file, source frame
``round(i * src_fps / target_fps)``, half up), for every ``i / target_fps`` before the last frame's midpoint.
:attr:`DecodedVideo.source_indices` maps output frames back to source frames (frame-level ground truth is
indexed by source frame). A target above the source rate repeats frames.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vadmil.errors import VadmilError, check_choice
from vadmil.extract.probe import INTEGRITY_MODES, NoVideoStream, StreamProbe, integrity_problems, probe_stream
from vadmil.extract.readers import BACKENDS, READERS, import_backend, reason

log = logging.getLogger("vadmil.extract")

__all__ = ["BACKENDS", "DecodedVideo", "VideoInfo", "open_video", "resample_indices", "resample_times"]


@dataclass(frozen=True)
class VideoInfo:
    """What :meth:`DecodedVideo.chunks` yields: ``n_frames`` frames of ``height`` x ``width`` at ``fps``, covering
    ``duration_s`` seconds by the stream's timestamps (``time_source``: "timestamps" or "frame_rate").

    With ``target_fps`` or ``resize`` these describe the resampled / resized stream, not the file.
    """

    path: str
    n_frames: int
    fps: float
    width: int
    height: int
    duration_s: float = 0.0
    time_source: str = "timestamps"


def resample_times(times: np.ndarray, target_fps: float | None) -> np.ndarray:
    """Source frame index of each output frame: the frame whose time is nearest to ``i / target_fps`` (ties to
    the later frame), for every ``i / target_fps`` before the last frame's time plus half an interval."""
    times = np.asarray(times, np.float64)
    n = len(times)
    if target_fps is None or n == 0:
        return np.arange(n, dtype=np.int64)
    last = times[-1] - times[-2] if n > 1 else 1.0 / target_fps
    end = times[-1] + 0.5 * last
    t = np.arange(int(math.ceil(end * target_fps)) + 2, dtype=np.float64) / target_fps
    t = t[t < end - 1e-9]
    hi = np.clip(np.searchsorted(times, t, side="left"), 0, n - 1)
    lo = np.clip(hi - 1, 0, n - 1)
    later = (times[hi] - t) <= (t - times[lo]) + 1e-9
    return np.where(later, hi, lo).astype(np.int64)


def resample_indices(n_frames: int, src_fps: float, target_fps: float | None) -> np.ndarray:
    """Constant-rate :func:`resample_times`: ``round(i * src_fps / target_fps)`` (half up), those < n_frames."""
    if target_fps is None or n_frames <= 0:
        return np.arange(max(n_frames, 0), dtype=np.int64)
    ratio = src_fps / target_fps
    i = np.arange(int(math.ceil(n_frames / ratio)) + 2, dtype=np.int64)
    idx = np.floor(i * ratio + 0.5 + 1e-9).astype(np.int64)
    return idx[idx < n_frames]


class DecodedVideo:
    """A probed video, decoded front to back by :meth:`chunks`. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str, backend: str, reader, probe: StreamProbe, source_indices: np.ndarray, fps,
                 problems: list[str]):  # fmt: skip
        self.path = path
        self.backend = backend
        self._reader = reader
        self.probe = probe  # the file's declared facts and real frames' timestamps
        self.problems = problems  # integrity problems found (integrity=warn), empty when whole
        # the file's own frame count and rate (frame size after ``resize``)
        self.source_info = VideoInfo(path, probe.n_frames, probe.fps, reader.width, reader.height,
                                     probe.duration_s, probe.time_source)  # fmt: skip
        self.source_indices = source_indices  # [n_frames] source frame index of each output frame
        self.times = probe.times[source_indices]  # [n_frames] seconds from the first frame
        self.info = VideoInfo(path, len(source_indices), fps, reader.width, reader.height, probe.duration_s,
                              probe.time_source)  # fmt: skip

    def chunks(self, chunk_frames: int = 64) -> Iterator[np.ndarray]:
        """Yield the video's frames in order as uint8 arrays ``[n, H, W, 3]`` (RGB), ``n <= chunk_frames``.

        Decodes sequentially from the first frame on each call. Raises :class:`VadmilError` when decoding fails
        part-way or the decoder yields a different number of frames than the probe counted.
        """
        if self._reader is None:
            raise VadmilError(f"{self.path} was closed; open it again with open_video")
        if chunk_frames < 1:
            raise VadmilError(f"chunk_frames must be positive, got {chunk_frames}")
        n = self.info.n_frames
        produced = 0
        try:
            for chunk in self._reader.read(self.source_indices, chunk_frames):
                produced += len(chunk)
                yield chunk
        except VadmilError:
            raise
        except Exception as exc:
            raise VadmilError(
                f"decoding {self.path} with {self.backend} failed after {produced} of {n} frames ({reason(exc)}); "
                "the file is truncated or damaged: re-encode it or leave it out"
            ) from exc
        decoded = self._reader.n_decoded
        if produced != n or (decoded is not None and decoded != self.probe.n_frames):
            got = decoded if decoded is not None else produced
            raise VadmilError(
                f"{self.path}: {self.backend} decoded {got} frames but the file's packets hold "
                f"{self.probe.n_frames}; the file is damaged: re-encode it or leave it out"
            )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> DecodedVideo:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DecodedVideo({self.info}, backend={self.backend!r})"


def _check_args(path: str, backend: str, target_fps, resize, integrity: str) -> tuple[int, int] | None:
    check_choice("video backend", backend, BACKENDS, where=path)
    check_choice("integrity", integrity, INTEGRITY_MODES)
    if not os.path.exists(path):
        raise VadmilError(f"video file not found: {path}; check the path (working directory {os.getcwd()})")
    if not os.path.isfile(path):
        raise VadmilError(f"{path} is not a file; give the path of a video file")
    if resize is not None:
        try:
            bad = len(resize) != 2 or any(int(v) != v or v < 1 for v in resize)
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise VadmilError(f"resize must be (height, width) in positive pixels, got {resize!r} for {path}")
        resize = (int(resize[0]), int(resize[1]))
    if target_fps is not None and not target_fps > 0:
        raise VadmilError(f"target_fps must be positive, got {target_fps!r} for {path}")
    return resize


def open_video(
    path: str | os.PathLike,
    backend: str = "decord",
    target_fps: float | None = None,
    resize: tuple[int, int] | None = None,
    integrity: str = "strict",
    tolerance: int = 1,
) -> DecodedVideo:
    """Probe ``path``, check its integrity and return a :class:`DecodedVideo` whose ``chunks()`` decodes it.

    ``resize=(h, w)`` resizes inside the decoder (roughly halves decode speed on vtest.avi; default: none).
    ``target_fps`` resamples by nearest frame selection (see the module docstring). ``integrity`` and
    ``tolerance`` (frames): see the module docstring. Raises :class:`VadmilError` for a missing file, an unknown
    or uninstalled backend, a file that is not a decodable video, a video without frames, or (strict) a damaged
    one.
    """
    path = os.fspath(path)
    resize = _check_args(path, backend, target_fps, resize, integrity)
    import_backend(backend, path)
    import_backend("pyav", path)  # the probe's demuxer, whatever the backend
    try:
        probe = probe_stream(path)
    except NoVideoStream:
        raise VadmilError(f"{path} has no video stream; give a video file or leave it out") from None
    except Exception as exc:
        raise VadmilError(
            f"cannot read {path} as a video ({reason(exc)}); check that it is a complete video file"
        ) from exc
    if probe.n_frames <= 0:
        raise VadmilError(f"{path} has no video frames; re-encode it or leave it out")
    problems = integrity_problems(probe, tolerance) if integrity != "off" else []
    if problems and integrity == "strict":
        raise VadmilError(
            f"{path} is damaged: {'; '.join(problems)}; re-encode or re-copy it, or extract what is there with "
            "integrity=warn"
        )
    for problem in problems:
        log.warning("%s: %s (integrity=warn: extracting the %d frames that are there)", path, problem,
                    probe.n_frames)  # fmt: skip
    try:
        reader = READERS[backend](path, resize, probe)
    except VadmilError:
        raise
    except Exception as exc:
        raise VadmilError(
            f"cannot read {path} as a video with {backend} ({reason(exc)}); check that it is a complete video "
            "file, or try another backend"
        ) from exc
    if target_fps is not None and probe.time_source != "timestamps" and not probe.stated_fps > 0:
        reader.close()
        raise VadmilError(
            f"{path} states neither timestamps nor a frame rate, so target_fps cannot be used; drop target_fps"
        )
    indices = resample_times(probe.times, target_fps)
    fps = float(target_fps) if target_fps is not None else probe.fps
    return DecodedVideo(path, backend, reader, probe, indices, fps, problems)

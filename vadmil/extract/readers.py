"""The three decoding backends behind :func:`vadmil.extract.decode.open_video`.

Each reader is opened with the :class:`~vadmil.extract.probe.StreamProbe` of its file and yields exactly the
probe's real frames, in presentation order, as RGB uint8 chunks ``[n, H, W, 3]`` (the libraries are imported only
when a backend is used):

- ``decord``: ``decord.VideoReader(path, ctx=cpu(0))`` read with ``get_batch`` on consecutive index ranges.
  ``len(reader)`` counts packets, discarded ones included, and decord fills the places of discarded frames by
  repeating the last frame at the end (an MP4 whose edit list starts after its first frames: decord 456 frames,
  the last a duplicate, other decoders 455), so only the first ``probe.n_frames`` indices are read.
- ``pyav``: ``av.open`` and ``stream.decode``; frames become arrays with ``to_ndarray(format="rgb24")``. Each
  decoded frame's timestamp is checked against the probe's: a frame the decoder skipped (a gap) is an error
  naming the expected and the found time.
- ``opencv``: ``cv2.VideoCapture(path, cv2.CAP_FFMPEG)``, frames converted BGR -> RGB. ``CAP_PROP_FRAME_COUNT`` is
  unreliable (it says 795 for the first half of vtest.avi, and duration x rate for a variable-rate file) and is
  not used. OpenCV cannot tell a decoding error from the end of the stream: a short read is caught by the count.

Every reader counts the frames it decoded (``n_decoded``); :class:`~vadmil.extract.decode.DecodedVideo` compares
that with the probe.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import numpy as np

from vadmil.errors import VadmilError
from vadmil.extract.probe import StreamProbe

BACKENDS = ("decord", "pyav", "opencv")
_INSTALL = {
    "decord": "pip install decord",
    "pyav": "pip install av",
    "opencv": "pip install opencv-python-headless",
}
_MODULE = {"decord": "decord", "pyav": "av", "opencv": "cv2"}
_DECORD_BATCH = 8


class OpenFailed(Exception):
    pass


def reason(exc: BaseException) -> str:
    """A one-line, short description of a decoder library's exception."""
    if isinstance(exc, OpenFailed):
        return str(exc)
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^\[[0-9:]+\]\s*\S+:\d+:\s*", "", text)  # decord's "[10:57:17] /src/file.cc:699: " prefix
    text = text[:200] + ("..." if len(text) > 200 else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def import_backend(backend: str, path: str):
    try:
        return __import__(_MODULE[backend])
    except ImportError:
        raise VadmilError(
            f"cannot open {path}: backend {backend} needs `{_INSTALL[backend]}`; install it or choose another "
            f"backend ({', '.join(BACKENDS)})"
        ) from None


class DecordReader:
    def __init__(self, path: str, resize: tuple[int, int] | None, probe: StreamProbe):
        decord = import_backend("decord", path)
        kwargs = {} if resize is None else {"height": resize[0], "width": resize[1]}
        self.vr = decord.VideoReader(path, ctx=decord.cpu(0), **kwargs)
        self.n_frames = probe.n_frames
        if len(self.vr) < self.n_frames:
            raise OpenFailed(f"decord indexes {len(self.vr)} frames, the stream has {self.n_frames}")
        # Decode the first frame now: decord "opens" some non-video files (a text file reads as 1 frame) and
        # only fails when asked for a frame.
        first = self.vr.get_batch([0]).asnumpy()
        self.height, self.width = int(first.shape[1]), int(first.shape[2])
        self.vr.seek(0)
        self.n_decoded: int | None = None

    def read(self, indices: np.ndarray, chunk_frames: int) -> Iterator[np.ndarray]:
        self.vr.seek(0)
        self.n_decoded = 0
        # Indices ascend, so get_batch only decodes forward (skipping frames without converting them). Batches of
        # 8 copied into the chunk decode ~1.6x faster than one get_batch of 64 on vtest.avi (cache effects).
        for start in range(0, len(indices), chunk_frames):
            part = indices[start : start + chunk_frames]
            out = np.empty((len(part), self.height, self.width, 3), np.uint8)
            for s in range(0, len(part), _DECORD_BATCH):
                out[s : s + _DECORD_BATCH] = self.vr.get_batch(part[s : s + _DECORD_BATCH].tolist()).asnumpy()
            yield out
        # decord decodes up to the last index asked for; past it, only the packet index vouches for the frames.
        self.n_decoded = self.n_frames if len(indices) and indices[-1] == self.n_frames - 1 else None

    def close(self):
        self.vr = None


def select_chunks(frames: Iterator, indices: np.ndarray, chunk_frames: int, size: tuple[int, int]):
    """Chunks [n, h, w, 3] of the frames at ``indices`` (sorted, repeats allowed) from a sequential stream of
    per-frame loaders; the whole stream is consumed (the decoded count is checked against the probed one), but
    only selected frames are converted."""
    total, j, k = len(indices), 0, 0
    buf = np.empty((min(chunk_frames, total), *size, 3), np.uint8)
    for i, load in enumerate(frames):
        if j >= total or indices[j] != i:
            continue
        buf[k] = frame = load()
        while True:
            j, k = j + 1, k + 1
            if k == len(buf):
                yield buf
                buf = np.empty((min(chunk_frames, total - j), *size, 3), np.uint8)
                k = 0
            if j >= total or indices[j] != i:
                break
            buf[k] = frame  # a repeated frame (target_fps above the source rate)
    if k:
        yield buf[:k]


class PyAVReader:
    def __init__(self, path: str, resize: tuple[int, int] | None, probe: StreamProbe):
        self.av = import_backend("pyav", path)
        self.path, self.probe = path, probe
        self.n_frames = probe.n_frames
        self.height, self.width = resize if resize is not None else (probe.height, probe.width)
        self.n_decoded: int | None = None

    def _check_time(self, i: int, frame, start: list) -> None:
        """The decoded frame ``i`` must be the probe's frame ``i``: a skipped frame shows as a later time."""
        if frame.pts is None or self.probe.time_source != "timestamps" or i >= self.n_frames:
            return
        if i == 0:
            start.append(float(frame.pts * frame.time_base))
        t = float(frame.pts * frame.time_base) - start[0]
        expected = self.probe.times[i]
        if abs(t - expected) > 1e-4 + 0.01 * self.probe.frame_interval:
            raise VadmilError(
                f"{self.path}: frames are missing after frame {i - 1}: expected frame {i} at {expected:.3f} s, the "
                f"decoder gave a frame at {t:.3f} s; the file is damaged: re-encode it or leave it out"
            )

    def read(self, indices: np.ndarray, chunk_frames: int) -> Iterator[np.ndarray]:
        self.n_decoded = 0
        with self.av.open(self.path) as container:
            start: list = []

            def loaders() -> Iterator:
                for i, frame in enumerate(container.decode(container.streams.video[0])):
                    self._check_time(i, frame, start)
                    self.n_decoded = i + 1
                    yield functools.partial(
                        frame.to_ndarray, format="rgb24", width=self.width, height=self.height
                    )

            yield from select_chunks(loaders(), indices, chunk_frames, (self.height, self.width))

    def close(self):
        pass


class OpenCVReader:
    def __init__(self, path: str, resize: tuple[int, int] | None, probe: StreamProbe):
        self.cv2 = import_backend("opencv", path)
        self.path = path
        self.n_frames = probe.n_frames
        cap = self._capture()
        try:
            if not cap.isOpened() or not cap.grab():
                raise OpenFailed("OpenCV could not open it")
            cv2 = self.cv2
            src = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
            self.height, self.width = resize if resize is not None else src
        finally:
            cap.release()
        self.n_decoded: int | None = None

    def _capture(self):
        cv2 = self.cv2
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # decord and PyAV ignore rotation metadata too
        return cap

    def read(self, indices: np.ndarray, chunk_frames: int) -> Iterator[np.ndarray]:
        cv2, (h, w) = self.cv2, (self.height, self.width)
        cap = self._capture()
        self.n_decoded = 0

        def frames() -> Iterator:
            while cap.grab():
                self.n_decoded += 1
                yield retrieve

        def retrieve() -> np.ndarray:
            ok, bgr = cap.retrieve()
            if not ok:
                raise RuntimeError(f"retrieve() failed at frame {self.n_decoded - 1}")
            if bgr.shape[:2] != (h, w):
                bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        try:
            yield from select_chunks(frames(), indices, chunk_frames, (h, w))
        finally:
            cap.release()

    def close(self):
        pass


READERS = {"decord": DecordReader, "pyav": PyAVReader, "opencv": OpenCVReader}

"""Cut snippets out of a sequentially decoded frame stream, with bounded memory.

``snippet_frame_indices`` says which frames each snippet holds; ``SnippetAssembler`` produces exactly those
snippets from frame chunks fed in order (as :meth:`DecodedVideo.chunks` yields them), so a video is decoded once,
front to back, and never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from vadmil.data.geometry import SnippetGeometry
from vadmil.errors import VadmilError


def snippet_frame_indices(n_frames: int, geometry: SnippetGeometry) -> np.ndarray:
    """Frame indices of every snippet, int64 ``[T, L]`` with ``T = geometry.n_snippets(n_frames)``.

    Snippet ``i`` covers frames ``i * stride ... i * stride + L - 1``. Indices past the end follow the tail policy:
    ``drop`` has no partial snippet; ``pad_last`` repeats the last frame; ``loop`` continues from frame 0 (the
    RTFM recipe; a video shorter than ``L`` frames loops more than once).
    """
    g = geometry
    t = g.n_snippets(n_frames)
    idx = np.arange(t, dtype=np.int64)[:, None] * g.stride + np.arange(g.length, dtype=np.int64)[None, :]
    if t == 0:
        return idx
    if g.tail_policy == "pad_last":
        idx = np.minimum(idx, n_frames - 1)
    elif g.tail_policy == "loop":
        idx = idx % n_frames
    return idx


class SnippetAssembler:
    """Turn frame chunks fed in order into snippets ``[L, H, W, 3]``, in order, as soon as each is complete.

    Between calls it keeps the frames of the next, incomplete snippet (fewer than ``L``) plus, for ``loop``, the
    first ``min(L, n_frames)`` frames for the looped tail; during a call it also sees the chunk being fed. Frames
    no snippet needs (a dropped tail, gaps when stride > length) are discarded on arrival.

    Usage::

        asm = SnippetAssembler(geometry, video.info.n_frames)
        for snippet in asm.run(video.chunks()):
            ...

    or call :meth:`feed` per chunk and :meth:`finish` at the end (which checks that exactly ``n_frames`` came).
    Snippets are new arrays (never views of a chunk), so keeping them does not keep chunks alive.
    """

    def __init__(self, geometry: SnippetGeometry, n_frames: int):
        self.geometry = geometry
        self.n_frames = int(n_frames)
        self.indices = snippet_frame_indices(self.n_frames, geometry)
        self.n_snippets = len(self.indices)
        self._next = 0  # next snippet to emit
        self._received = 0  # frames fed so far
        self._buf: np.ndarray | None = None  # frames [_buf_start, _received)
        self._buf_start = 0
        self._head_len = min(geometry.length, self.n_frames) if geometry.tail_policy == "loop" else 0
        self._head: np.ndarray | None = None  # loop only: frames [0, _head_len)
        self._head_filled = 0

    @property
    def buffered_frames(self) -> int:
        """Frames held between calls: the next snippet's frames so far, plus the loop head."""
        held = 0 if self._buf is None else len(self._buf)
        return held + (0 if self._head is None else len(self._head))

    def _ready_until(self, i: int) -> int:
        """Frames that must have arrived before snippet ``i`` can be emitted."""
        start = i * self.geometry.stride
        return min(self.n_frames, start + self.geometry.length)

    def feed(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """Take the next frames ``[n, H, W, 3]`` and yield every snippet they complete.

        The chunk is consumed when the returned iterator is exhausted (``list(asm.feed(chunk))`` or a loop).
        """
        chunk = np.asarray(chunk)
        n = len(chunk)
        first = self._received
        if first + n > self.n_frames:
            raise VadmilError(
                f"the decoder yielded more than the {self.n_frames} frames the video was opened with; "
                "re-encode the video or try another decoding backend"
            )
        if self._head_filled < self._head_len and n:
            if self._head is None:
                self._head = np.empty((self._head_len, *chunk.shape[1:]), chunk.dtype)
            take = min(self._head_len - self._head_filled, n)
            self._head[self._head_filled : self._head_filled + take] = chunk[:take]
            self._head_filled += take
        self._received += n
        if self._buf is None or len(self._buf) == 0:
            # Nothing kept: skip frames no snippet needs (gaps, or everything past the last snippet).
            keep_from = (
                max(first, self._next * self.geometry.stride) if self._next < self.n_snippets else first + n
            )
            self._buf = chunk[keep_from - first :]
            self._buf_start = keep_from
        else:
            self._buf = np.concatenate([self._buf, chunk])
        while self._next < self.n_snippets and self._received >= self._ready_until(self._next):
            yield self._take(self.indices[self._next])
            self._next += 1
        self._trim()

    push = feed  # alias: ``for snippet in asm.push(chunk)``

    def _take(self, idx: np.ndarray) -> np.ndarray:
        local = idx - self._buf_start
        inside = local >= 0
        if inside.all():
            return self._buf[local]  # fancy indexing: a copy
        out = np.empty((len(idx), *self._buf.shape[1:]), self._buf.dtype)
        out[inside] = self._buf[local[inside]]
        out[~inside] = self._head[idx[~inside]]  # looped tail: frames from the start of the video
        return out

    def _trim(self) -> None:
        """Keep only frames from the next snippet's start on, copied so that the fed chunk can be freed."""
        if self._next >= self.n_snippets:
            self._buf, self._buf_start = None, self._received
            return
        start = self._next * self.geometry.stride
        drop = min(max(start - self._buf_start, 0), len(self._buf))
        self._buf = self._buf[drop:].copy()
        self._buf_start += drop

    def finish(self) -> Iterator[np.ndarray]:
        """Check that all ``n_frames`` frames came; yields nothing more (every snippet is emitted by :meth:`feed`)."""
        if self._received != self.n_frames:
            raise VadmilError(
                f"the decoder yielded {self._received} frames but the video was opened with {self.n_frames}; "
                "the file may be truncated: re-encode it or try another decoding backend"
            )
        self._buf = self._head = None
        return iter(())

    def run(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Feed every chunk in order, yield every snippet, then :meth:`finish`."""
        for chunk in chunks:
            yield from self.feed(chunk)
        yield from self.finish()

"""Encoder-made test videos (PyAV), tiny (64 x 48): clean, cut, zeroed, edit-listed, variable-rate, lying header.

Frame ``i`` has mean brightness ``level(i)``, so a test can tell which frames a decoder returned.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

W, H = 64, 48


def level(i: int) -> int:
    return 10 + 4 * i


def encode(path: Path, codec: str = "mpeg4", n: int = 48, rate: int = 10, pts: list[int] | None = None,
           time_base: Fraction | None = None) -> Path:  # fmt: skip
    """Write ``n`` frames; ``pts`` (in ``time_base`` units) sets each frame's timestamp, else the encoder's rate."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 2_000_000  # high quality: frame means stay within 3 of the encoded level
        if time_base is not None:
            stream.time_base = time_base
        for i in range(n):
            noise = rng.integers(-4, 5, (H, W, 3))  # keeps the encoder from producing near-empty packets
            frame = av.VideoFrame.from_ndarray(
                np.clip(level(i) + noise, 0, 255).astype(np.uint8), format="rgb24"
            )
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def has_x264() -> bool:
    av = pytest.importorskip("av")
    return "libx264" in av.codecs_available


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes (a copy that stopped early)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def zero_middle(src: Path, dst: Path, fraction: float = 0.125) -> Path:
    """``src`` with ``fraction`` of its bytes zeroed from the middle on (a damaged disk block)."""
    data = bytearray(src.read_bytes())
    start, size = len(data) // 2, int(len(data) * fraction)
    data[start : start + size] = bytes(size)
    dst.write_bytes(bytes(data))
    return dst


def edit_listed(path: Path, trimmed: int = 3, n: int = 37) -> Path:
    """H.264 MP4 whose first ``trimmed`` frames have negative timestamps: the muxer writes an edit list that
    starts at 0, the demuxer marks those packets discarded. decord counts them and repeats the last frame in
    their place (the issue's 456-vs-455 case); PyAV and OpenCV drop them."""
    return encode(path, "libx264", n, pts=list(range(-trimmed, n - trimmed)), time_base=Fraction(1, 10))


VFR_GAPS_MS = (33, 66, 100, 400)


def vfr_pts(n: int = 37) -> list[int]:
    """Millisecond timestamps with irregular gaps (a variable-rate camera)."""
    gaps = np.random.default_rng(1).choice(VFR_GAPS_MS, size=n - 1)
    return [0, *np.cumsum(gaps).tolist()]


def stream_times(path: Path) -> np.ndarray:
    """Each decoded frame's presentation time (PyAV ``frame.time``), seconds from the first frame: the reference
    the extractor's times must equal (read by decoding, not by the extractor's demux pass)."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        t = np.array([frame.time for frame in container.decode(video=0)], np.float64)
    return t - t[0]


def variable_rate(path: Path, n: int = 37) -> Path:
    """Frames at irregular times (``vfr_pts``, ms; the encoder rounds them to its 1/30 s clock), header 30 fps."""
    return encode(path, "libx264" if has_x264() else "mpeg4", n, rate=30, pts=vfr_pts(n),
                  time_base=Fraction(1, 1000))  # fmt: skip


def wrong_fps(path: Path, n: int = 30, every_ms: int = 400) -> Path:
    """An MKV whose header states 30 fps while its frames come every 0.4 s (2.5 fps), as from a camera that
    drops frames: the timestamps are consistent, the stated rate is not."""
    return encode(
        path, "mpeg4", n, rate=30, pts=[every_ms * i for i in range(n)], time_base=Fraction(1, 1000)
    )

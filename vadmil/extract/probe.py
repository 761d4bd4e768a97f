"""What a video file says about itself, and which of its frames are real: a demux pass, no decoding.

:func:`probe_stream` reads every packet of the first video stream with PyAV (``container.demux``: it reads the
file without decoding it, a few ms per 1,000 frames) and keeps:

- the container's **declared** frame count (``stream.frames``; 0, i.e. unknown, for MKV/WebM/TS) and duration
  (the stream's own duration, else the container's when the video is its only stream);
- the **real frames**: non-empty packets that the container does not mark as discarded. An MP4 edit list that
  starts after the first frames marks those packets as discarded; decoders drop them (PyAV, OpenCV), while
  decord indexes them and repeats the last frame in their place at the end. Every backend yields exactly the
  real frames (see :mod:`vadmil.extract.decode`);
- each real frame's **presentation time** in seconds from the first real frame (``pts x time_base``; ``dts``
  when a packet has no ``pts``; ``i / fps`` only when the stream carries no timestamps at all — recorded as
  ``time_source="frame_rate"``).

:func:`integrity_problems` compares these (the tolerance is documented in the README, "Damaged videos").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vadmil.errors import VadmilError

INTEGRITY_MODES = ("strict", "warn", "off")


@dataclass(frozen=True)
class StreamProbe:
    """A video stream's declared facts and its real frames' times (seconds from the first real frame)."""

    path: str
    declared_frames: int | None  # the container's frame count, None when it states none
    declared_duration_s: float | None  # the container's duration of the video, None when it states none
    stated_fps: float  # the header's rate (average_rate, else guessed/base rate), 0 when absent
    n_packets: int  # non-empty packets, discarded ones included
    times: np.ndarray = field(
        repr=False
    )  # [n_frames] float64, ascending: presentation time of each real frame
    durations: np.ndarray = field(
        repr=False
    )  # [n_frames] float64: each real frame's display duration (0: unknown)
    time_source: str = "timestamps"  # "timestamps" or "frame_rate" (the stream has no timestamps)
    width: int = 0
    height: int = 0

    @property
    def n_frames(self) -> int:
        return len(self.times)

    @property
    def n_discarded(self) -> int:
        return self.n_packets - self.n_frames

    @property
    def duration_s(self) -> float:
        """From the first real frame's start to the last one's end, by the timestamps."""
        if not self.n_frames:
            return 0.0
        last, interval = float(self.durations[-1]), self.frame_interval
        # A last packet without a duration, or with just the header's rate that the timestamps contradict (an
        # MKV's default duration), lasts as long as the frames before it.
        header_default = self.stated_fps > 0 and abs(last * self.stated_fps - 1) < 0.02  # ms rounding
        if last <= 0 or (header_default and interval > 0 and abs(interval * self.stated_fps - 1) > 0.01):
            last = interval
        return float(self.times[-1] - self.times[0] + last)

    @property
    def frame_interval(self) -> float:
        """The median time between consecutive frames (1 / stated fps for a single frame)."""
        if self.n_frames > 1:
            return float(np.median(np.diff(self.times)))
        return 1.0 / self.stated_fps if self.stated_fps > 0 else 0.0

    @property
    def fps(self) -> float:
        """Frames per second of the timestamps: the stated rate when the timestamps agree with it within 1 %,
        else frames / duration (a variable rate, or a header that states a wrong rate)."""
        measured = self.n_frames / self.duration_s if self.duration_s > 0 else 0.0
        if self.stated_fps > 0 and (
            measured == 0 or abs(measured - self.stated_fps) <= 0.01 * self.stated_fps
        ):
            return self.stated_fps
        return measured

    @property
    def variable_rate(self) -> bool:
        """Intervals between frames differ by more than 1 % of the median (or a quarter millisecond)."""
        if self.n_frames < 3:
            return False
        gaps = np.diff(self.times)
        return bool(np.abs(gaps - np.median(gaps)).max() > max(0.01 * np.median(gaps), 2.5e-4))


def _seconds(value, time_base) -> float | None:
    return float(value * time_base) if value is not None and time_base is not None else None


def probe_stream(path: str) -> StreamProbe:
    """Demux ``path`` (no decoding) and return its :class:`StreamProbe`. PyAV errors propagate to the caller."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise NoVideoStream()
        stream = container.streams.video[0]
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        stated = float(rate) if rate else 0.0
        declared = int(stream.frames) if stream.frames and stream.frames > 0 else None
        duration = _seconds(stream.duration, tb)
        if duration is None and container.duration and len(container.streams) == 1:
            duration = (
                container.duration / 1e6
            )  # av.time_base: microseconds; only when nothing else can be longer
        ctx = stream.codec_context
        if ctx is None:  # e.g. an MP4 cut before its index: the stream is listed but has no codec parameters
            raise ValueError("the video stream has no codec parameters (the file ends before its index?)")
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        stamps, lengths, n_packets = [], [], 0
        for packet in container.demux(stream):
            if packet.size <= 0:
                continue  # the demuxer's final flush packet, or an AVI "drop frame" marker: no picture
            n_packets += 1
            if packet.is_discard:
                continue
            stamps.append(packet.pts if packet.pts is not None else packet.dts)
            lengths.append(packet.duration or 0)
    if stamps and all(s is not None for s in stamps):
        order = np.argsort(np.asarray(stamps, np.int64), kind="stable")  # decode order -> presentation order
        ticks = np.asarray(stamps, np.int64)[order]
        times = (ticks - ticks[0]).astype(np.float64) * float(tb)
        durations = np.asarray(lengths, np.float64)[order] * float(tb)
        source = "timestamps"
    else:
        if not stated > 0:
            times = np.arange(len(stamps), dtype=np.float64)  # nothing to go by: one "second" per frame
        else:
            times = np.arange(len(stamps), dtype=np.float64) / stated
        durations = np.zeros(len(stamps))
        source = "frame_rate"
    return StreamProbe(path, declared, duration, stated, n_packets, times, durations, source, width, height)


class NoVideoStream(Exception):
    pass


def integrity_problems(probe: StreamProbe, tolerance: int = 1) -> list[str]:
    """What is wrong with a probed stream, as 'expected X, found Y' phrases; empty when it is whole.

    Checks, each allowing ``tolerance`` frames (or frame intervals) of slack: the container's declared frame
    count against the packets found; its declared duration against the timestamps' span; timestamps that repeat.
    More packets than declared, and a rate the timestamps contradict, are not problems: headers lie, the
    timestamps decide (a variable-rate file or a camera that dropped frames plays for as long as its timestamps
    say).
    """
    if tolerance < 0:
        raise VadmilError(f"integrity_tolerance must be >= 0 frames, got {tolerance}")
    problems = []
    if probe.declared_frames is not None and probe.declared_frames - probe.n_packets > tolerance:
        problems.append(
            f"the container declares {probe.declared_frames} frames but only {probe.n_packets} are in the file "
            f"({probe.declared_frames - probe.n_packets} missing)"
        )
    interval = probe.frame_interval
    if probe.declared_duration_s is not None and interval > 0 and probe.time_source == "timestamps":
        short = probe.declared_duration_s - probe.duration_s
        # Half an interval of slack on top: containers round durations to their own time base.
        if short > (tolerance + 0.5) * interval:
            problems.append(
                f"the container declares {probe.declared_duration_s:.3f} s but the frames' timestamps cover "
                f"{probe.duration_s:.3f} s ({short:.3f} s, about {math.floor(short / interval + 0.5)} frames, missing)"
            )
    if probe.n_frames > 1 and probe.time_source == "timestamps":
        repeats = int((np.diff(probe.times) <= 0).sum())
        if repeats > tolerance:
            problems.append(
                f"{repeats} frames repeat an earlier frame's timestamp (expected distinct timestamps)"
            )
    return problems

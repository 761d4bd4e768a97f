"""Helpers shared by the annotation parsers (:mod:`vadmil.data.annotations`, :mod:`vadmil.data.manifest`):
reading a file, one id per video, and frame intervals."""

from __future__ import annotations

import logging
from pathlib import Path

from vadmil.data.labels import VideoLabel, normalise_video_id
from vadmil.errors import VadmilError

log = logging.getLogger("vadmil.data")
HINT = "(set it with dataset.annotations.<split>.path=...)"


def read_text(path) -> str:
    if path is None or str(path) == "":
        raise VadmilError(f"no annotation file given {HINT}")
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VadmilError(f"annotation file {path} does not exist {HINT}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VadmilError(f"cannot read annotation file {path} ({type(e).__name__}) {HINT}") from None


def read_lines(path) -> list[tuple[int, str]]:
    """Non-blank stripped lines with their 1-based line numbers."""
    lines = [(i, s.strip()) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    if not lines:
        raise VadmilError(f"annotation file {path} is empty; point to the right file {HINT}")
    return lines


def add(out: dict[str, VideoLabel], video: VideoLabel, where: str) -> None:
    old = out.setdefault(video.video_id, video)
    if old != video:
        raise VadmilError(
            f"{where}: video {video.video_id} appears again with a different label, intervals or category; "
            "keep one entry per video"
        )


def video_id(name: str, where: str) -> str:
    try:
        return normalise_video_id(name)
    except VadmilError as e:
        raise VadmilError(f"{where}: {e}") from None


def show(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")


def intervals(nums, where: str, fmt: str, clipped: list | None = None) -> tuple[tuple[int, int], ...]:
    """Pairs (s, e) from a flat list of integers. Pairs with e < 0 are absent (UCF-Crime writes -1 -1); a pair
    starting before frame 0 is clipped to start at 0 (``where`` appended to ``clipped`` for one warning)."""
    try:
        vals = [int(x) for x in nums]
    except (TypeError, ValueError):
        raise VadmilError(f"{where}: frame indices must be integers; expected '{fmt}'") from None
    if len(vals) % 2:
        raise VadmilError(f"{where}: odd number of frame indices ({len(vals)}); expected '{fmt}'")
    pairs = []
    for s, e in zip(vals[::2], vals[1::2], strict=True):
        if s < 0 and e < 0:
            continue
        if e < s:
            raise VadmilError(f"{where}: interval {s} {e} ends before it starts; expected '{fmt}'")
        if s < 0 and clipped is not None:
            clipped.append(where)
        pairs.append((max(s, 0), e))
    return tuple(pairs)


def warn_clipped(path, clipped: list) -> None:
    if clipped:
        log.warning(
            "%s: %d interval(s) start before frame 0 (first at %s); clipped to start at frame 0",
            path, len(clipped), clipped[0],
        )  # fmt: skip

"""The segmented store layout (schema v2): an index file at the store path whose ``/videos/<id>`` entries are
HDF5 external links into immutable segment files in ``<store>.segments/``.

A commit writes the new videos into one new segment file, then a new index (links only: about 100 bytes per
video) that atomically replaces the old one, so its cost follows the new data, not the store. A store file that
holds videos itself (a v1 store, or a compacted one) becomes the first segment by a hard link — no copy. Segments
are never modified; one no index links to (left by a killed writer, or whose videos were all overwritten) is
deleted by the next writer. :mod:`vadmil.data.store_compact` rewrites a store into one self-contained file.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py

log = logging.getLogger("vadmil.data.store")

VIDEOS = "videos"


@dataclass(frozen=True)
class Entry:
    """Where one committed video lives: ``segment`` (relative to the store's folder) and the object ``path`` in
    it, or ``segment=None`` for a group inside the store file itself. ``complete``: its write finished."""

    segment: str | None
    path: str
    complete: bool


def segments_dir(path: Path) -> Path:
    return path.with_name(path.name + ".segments")


def entries(f: h5py.File) -> dict[str, Entry]:
    """Every video entry of an open store file, linked or in-file (links are not followed: no segment opened)."""
    videos, out = f[VIDEOS], {}
    for video_id in videos:
        link = videos.get(video_id, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            # A commit links only videos whose write completed, into a segment synced before the link existed.
            out[video_id] = Entry(link.filename, link.path, True)
        else:
            out[video_id] = Entry(
                None, f"/{VIDEOS}/{video_id}", bool(videos[video_id].attrs.get("complete", False))
            )
    return out


def next_segment(folder: Path) -> str:
    """A name no file in ``folder`` has: one more than the highest number there."""
    numbers = [int(p.name[:6]) for p in folder.iterdir() if p.name[:6].isdigit()] if folder.is_dir() else []
    return f"{max(numbers, default=0) + 1:06d}.h5"


def absorb(path: Path, folder: Path, fsync) -> str | None:
    """Make the store file at ``path`` (which holds videos itself) a segment: hard-link it into ``folder`` (no
    copy, and the store path keeps its bytes until the new index replaces it). Returns the segment's name relative
    to the store's folder. Falls back to one full copy where the file system has no hard links."""
    name = next_segment(folder)
    target = folder / name
    try:
        os.link(path, target)
    except OSError as err:
        log.warning(
            "the file system of %s has no hard links (%s): copying the store once into %s", path, err, folder
        )
        tmp = target.with_suffix(".tmp")
        try:
            shutil.copyfile(path, tmp)
            fsync(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return f"{folder.name}/{name}"


def write_index(tmp: Path, attrs, links: dict[str, tuple[str, str]], schema_version: int) -> None:
    """A new index file at ``tmp``: the root attributes and one external link per video (id → (segment, path))."""
    with h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["schema_version"] = schema_version
        videos = f.create_group(VIDEOS)
        for video_id in sorted(links):
            segment, obj = links[video_id]
            videos[video_id] = h5py.ExternalLink(segment, obj)


def collect_garbage(path: Path, referenced: set[str]) -> None:
    """Delete the segment files no entry of the store's index refers to, and the folder once empty (the caller
    holds the writer lock). Readers still holding an older index reopen the store when a segment is gone."""
    folder = segments_dir(path)
    if not folder.is_dir():
        return
    keep = {Path(s).name for s in referenced if Path(s).parent.name == folder.name}
    for f in folder.iterdir():
        if f.name not in keep:
            f.unlink()
    if not keep:
        folder.rmdir()


def missing_segments(path: Path, found: dict[str, Entry]) -> list[str]:
    """Segment files the index links to that are not on disk (sorted)."""
    names = {e.segment for e in found.values() if e.segment is not None}
    return sorted(n for n in names if not (path.parent / n).exists())

"""The HDF5 feature store (schema v2; v1 stores are read as they are): the only link between feature extraction
and training.

Layout::

    /                      root attributes: the recipe (schema_version, backbone, feature_dim, n_crops, ...)
    /videos/<video_id>/    one group per video — in the store file itself, or (schema v2) an HDF5 external link
                           to the same group in an immutable segment file <store>.segments/<NNNNNN>.h5
        features           dataset [T, C, D] (float16 or float32), uncompressed, chunked per video
        attrs              n_frames, fps, source, mean_norm, complete (set last, after the data is written)

Crash safety. HDF5 has no atomic commit: a process killed while HDF5 flushes metadata can leave a file that no
longer opens (measured: about half of the write points of an in-place append). So a writer never modifies a
published file in place:

- ``append`` writes each video to its own small file in ``<store>.pending/``, renamed into place only once
  complete — a pending file either exists whole or not at all;
- ``commit`` (on ``close``, or when called) writes the pending videos into a new segment file, syncs it, writes a
  new index (the old links plus the new ones), syncs it and atomically renames it over the store, then deletes the
  pending files (:mod:`vadmil.data.store_layout`): its cost follows the new data, not the store's size.

A kill at any moment leaves the last committed store intact plus complete pending files; readers see both, and the
next writer commits them first. A writer holds an exclusive lock (``<store>.lock``) so two writers never race.
Writing is :mod:`vadmil.data.store_writer` (symlinks, partial files, disk space); ``vadmil store compact``
(:mod:`vadmil.data.store_compact`) rewrites a store into one self-contained file.
Handles are opened lazily and reopened after a fork, so one reader can be handed to DataLoader workers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from vadmil import __version__
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import plain_attr, recipe_of
from vadmil.data.store_layout import Entry, entries, missing_segments, segments_dir
from vadmil.data.store_writer import EXTRA, SCHEMA_VERSION, VIDEOS, StoreWriter, store_path
from vadmil.errors import VadmilError

__all__ = ["EXTRA", "READABLE_VERSIONS", "SCHEMA_VERSION", "VIDEOS", "FeatureStore"]

READABLE_VERSIONS = (1, 2)  # v1: every video inside the store file; v2: videos may link to segment files

log = logging.getLogger(__name__)


_REQUIRED = {
    "feature_dim": int,
    "n_crops": int,
    "snippet_len": int,
    "snippet_stride": int,
    "tail_policy": str,
}


def _missing_recipe(attrs) -> str | None:
    """The root attributes every reader needs that are absent or of the wrong kind, as text; None if all fine."""
    bad = []
    for key, kind in _REQUIRED.items():
        try:
            ok = key in attrs and (kind is str or int(attrs[key]) > 0)
        except (TypeError, ValueError):
            ok = False
        bad += [] if ok else [key]
    return ", ".join(bad) or None


class FeatureStore(StoreWriter):
    """Read and append per-video snippet features (the writing methods: :class:`~vadmil.data.store_writer.StoreWriter`).

    ``FeatureStore(path)`` opens an existing store for reading; ``FeatureStore.create(path, recipe)`` makes a new
    one, or reopens an existing one with the same recipe, for appending (use it as a context manager, or call
    ``close()``, so the appended videos are committed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = store_path(path)  # a symlink's target: readers look beside the file writers write
        self.writable = False
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._lock_fd: int | None = None
        self._pending_handles: dict[str, h5py.File] = {}
        self._pending_index: dict[str, Path] | None = None
        self._segment_handles: dict[str, h5py.File] = {}
        self._entries: dict[str, Entry] | None = None
        self._check()

    # ---- opening -------------------------------------------------------------------------------------------
    def _check(self) -> None:
        """Fail early, with a fix, on a missing, unreadable, foreign or newer-schema file."""
        if not self.path.exists():
            raise VadmilError(
                f"feature store {self.path} does not exist; create it with `vadmil extract` or `vadmil import`, "
                "or point dataset.store at an existing file"
            )
        try:
            f = self.file
        except OSError as err:
            raise VadmilError(
                f"feature store {self.path} is not a readable HDF5 file (truncated or not HDF5: {err}); "
                "re-create it with `vadmil extract` or `vadmil import`"
            ) from None
        version = f.attrs.get("schema_version")
        problem = None
        if version is None or VIDEOS not in f:
            problem = (
                f"{self.path} is an HDF5 file but not a vadmil feature store (no schema_version attribute or "
                "videos group); convert your features with `vadmil import`"
            )
        elif (missing := _missing_recipe(f.attrs)) is not None:
            problem = (
                f"feature store {self.path} has a schema_version but its recipe attribute(s) {missing} are missing or "
                "not numbers (written by another tool, or damaged); re-create it with `vadmil extract` or `vadmil import`"
            )
        elif int(version) not in READABLE_VERSIONS:
            problem = (
                f"feature store {self.path} has schema version {int(version)} but this vadmil "
                f"({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}; re-create the store or "
                "install a matching vadmil"
            )
        elif missing := self._missing_segments():
            problem = (
                f"feature store {self.path} links to {len(missing)} segment file(s) that are not there "
                f"(e.g. {self.path.parent / missing[0]}): a store is its file plus its folder "
                f"{segments_dir(self.path).name}/ — copy or move both, or make a one-file copy with "
                f"`vadmil store compact store=<original store> output=<copy>`"
            )
        if problem:
            self.close()
            raise VadmilError(problem)

    @property
    def file(self) -> h5py.File:
        """The open (read-only) h5py handle, (re)opened lazily in each process: handles do not survive fork."""
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._pending_handles, self._pending_index = {}, None
            self._segment_handles, self._entries = {}, None
        return self._file

    def _index(self) -> dict[str, Entry]:
        """The committed video entries of the open store file (read once per handle: the file is never changed
        in place, only replaced)."""
        store_file = self.file  # first: a reopen resets the index
        if self._entries is None:
            self._entries = entries(store_file)
        return self._entries

    def _replaced(self) -> bool:
        """Whether a writer replaced the store file since our handle was opened."""
        return os.stat(self.path).st_ino != os.fstat(self.file.id.get_vfd_handle()).st_ino

    def _missing_segments(self) -> list[str]:
        """Segment files the store links to that are missing, re-reading the store once if a writer replaced it
        meanwhile (a commit or compaction may delete segments only the older index used)."""
        missing = missing_segments(self.path, self._index())
        if missing and self._replaced():
            self._release_handles()
            missing = missing_segments(self.path, self._index())
        return missing

    def _segment(self, name: str) -> h5py.File:
        if name not in self._segment_handles:
            self._segment_handles[name] = h5py.File(self.path.parent / name, "r")
        return self._segment_handles[name]

    @property
    def pending_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".pending")

    def _pending(self) -> dict[str, Path]:
        """Appended but not yet committed videos: id → file, as of opening (a writer keeps it current).
        Only whole files are ever visible: they are renamed into place once complete."""
        while True:
            store_file = self.file  # a reopen (e.g. after fork) resets the index
            if self._pending_index is not None:
                return self._pending_index
            index, vanished = {}, False
            for f in sorted(self.pending_dir.glob("*.h5")) if self.pending_dir.is_dir() else []:
                try:
                    with h5py.File(f, "r") as h:
                        index[str(h.attrs["video_id"])] = f
                except OSError:
                    if f.exists():  # only after a power loss: that video is not in the store
                        log.warning("skipping unreadable pending video file %s", f)
                    else:
                        vanished = True
            # A writer commits by replacing the store file, then deleting the pending files: if one vanished, or
            # the store was replaced after our handle was opened, our handle may lack videos no longer pending.
            if vanished or os.stat(self.path).st_ino != os.fstat(store_file.id.get_vfd_handle()).st_ino:
                self._release_handles()
                continue
            self._pending_index = index

    def close(self) -> None:
        """Commit pending videos (writers), then close every handle and release the writer lock."""
        try:
            if self.writable:
                self.commit()
        finally:
            self._release_handles()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd, self.writable = None, False

    def _release_handles(self) -> None:
        if self._pid == os.getpid():
            for h in [*self._pending_handles.values(), *self._segment_handles.values()]:
                h.close()
            if self._file is not None:
                self._file.close()
        self._file, self._pending_handles, self._pending_index = None, {}, None
        self._segment_handles, self._entries = {}, None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        # Pickled into DataLoader workers (spawn) as a reader without handles; each worker opens its own.
        return {"path": self.path}

    def __setstate__(self, state):
        self.path, self.writable, self._lock_fd = state["path"], False, None
        self._file, self._pid, self._pending_handles, self._pending_index = None, None, {}, None
        self._segment_handles, self._entries = {}, None

    # ---- recipe --------------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {k: plain_attr(v) for k, v in self.file.attrs.items()}

    @property
    def feature_dim(self) -> int:
        return int(self.file.attrs["feature_dim"])

    @property
    def n_crops(self) -> int:
        return int(self.file.attrs["n_crops"])

    @property
    def geometry(self) -> SnippetGeometry:
        return SnippetGeometry.from_attrs(self.file.attrs)

    @property
    def extra_streams(self) -> dict[str, int]:
        """Declared extra streams: name → dim (e.g. ``{"vggish": 128}``)."""
        return json.loads(self.file.attrs.get("extra_streams", "{}"))

    def read_extra(self, video_id: str, name: str) -> np.ndarray:
        """One video's extra stream ``name``, float32 [T_e, dim]."""
        group = self._group(video_id)
        if name not in group.get(EXTRA, {}):
            raise VadmilError(f"video '{video_id}' in feature store {self.path} has no extra stream '{name}'")
        return group[EXTRA][name][()].astype(np.float32, copy=False)

    def read_extras(self, video_id: str) -> dict[str, np.ndarray]:
        """All extra streams of one video: name → float32 [T_e, dim]."""
        group = self._group(video_id)
        return {name: ds[()].astype(np.float32, copy=False) for name, ds in group.get(EXTRA, {}).items()}

    @property
    def pooled(self) -> bool:
        return bool(self.file.attrs.get("pooled", False))

    def recipe(self) -> dict:
        return recipe_of(self.attrs)

    def check_feature_dim(self, expected: int | None) -> None:
        """Error naming both values when a config expects another feature dimension."""
        if expected is not None and int(expected) != self.feature_dim:
            raise VadmilError(
                f"feature store {self.path} holds {self.feature_dim}-d features but the config expects "
                f"{int(expected)}-d; set dataset.feature_dim={self.feature_dim} (or null) or use a store with "
                f"{int(expected)}-d features"
            )

    # ---- videos --------------------------------------------------------------------------------------------
    def _committed(self, complete_only: bool = True) -> list[str]:
        return [v for v, entry in self._index().items() if entry.complete or not complete_only]

    def ids(self, complete_only: bool = True) -> list[str]:
        """Video ids in the store (committed and pending), sorted; videos whose write never completed are left
        out unless asked for."""
        pending = self._pending()  # first: it may reopen the store file
        return sorted(set(self._committed(complete_only)) | set(pending))

    def __contains__(self, video_id: str) -> bool:
        if video_id in self._pending():  # first: it may reopen the store file
            return True
        entry = self._index().get(video_id)
        return entry is not None and entry.complete

    def __len__(self) -> int:
        return len(self.ids())

    def _group(self, video_id: str) -> h5py.Group:
        pending = self._pending().get(video_id)
        if pending is not None:  # checked first: newer than a committed copy (append with overwrite=True)
            if video_id not in self._pending_handles:
                try:
                    self._pending_handles[video_id] = h5py.File(pending, "r")
                except OSError:
                    if pending.exists():
                        raise
                    # committed by a writer since we opened: the new store file has it
                    self._release_handles()
                    return self._group(video_id)
            return self._pending_handles[video_id]
        entry = self._index().get(video_id)
        if entry is not None and entry.complete:
            if entry.segment is None:
                return self.file[VIDEOS][video_id]
            try:
                return self._segment(entry.segment)[entry.path]
            except (OSError, KeyError):
                if (self.path.parent / entry.segment).exists() or not self._replaced():
                    raise VadmilError(
                        f"video '{video_id}' of feature store {self.path} is in segment file "
                        f"{self.path.parent / entry.segment}, which is missing or damaged; restore the store's "
                        f"folder {segments_dir(self.path).name}/ or re-create the store"
                    ) from None
                # a writer replaced the store (a compaction, an overwrite) and deleted that segment: re-read it
                self._release_handles()
                return self._group(video_id)
        raise VadmilError(
            f"video '{video_id}' is not in feature store {self.path} (or its write never completed); "
            "check the id against `FeatureStore.ids()` or re-run the extraction"
        )

    def info(self, video_id: str) -> dict:
        """Per-video attributes: n_frames, fps, source, mean_norm, n_snippets."""
        g = self._group(video_id)
        info = {k: plain_attr(v) for k, v in g.attrs.items() if k != "video_id"}
        info["n_snippets"] = int(g["features"].shape[0])
        return info

    def features(self, video_id: str) -> h5py.Dataset:
        """One video's features as stored, read lazily ([T, C, D]; slice it to read)."""
        return self._group(video_id)["features"]

    def n_snippets(self, video_id: str) -> int:
        return int(self._group(video_id)["features"].shape[0])

    def n_frames(self, video_id: str) -> int:
        return int(self._group(video_id).attrs["n_frames"])

    def read(self, video_id: str, check_finite: bool = True) -> np.ndarray:
        """Features of one video, float32 [T, C, D]. Non-finite values are an error naming the video."""
        x = self._group(video_id)["features"][()].astype(np.float32, copy=False)
        if check_finite and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=(1, 2)).sum())
            raise VadmilError(
                f"video '{video_id}' in feature store {self.path} has NaN/Inf features in {bad} of {len(x)} "
                "snippets; re-extract or re-import that video"
            )
        return x

    def mean_norm(self) -> float:
        """Mean per-snippet L2 norm over complete videos (weighted by snippet count)."""
        total = count = 0.0
        for v in self.ids():
            g = self._group(v)
            n = g["features"].shape[0]
            total += float(g.attrs.get("mean_norm", 0.0)) * n
            count += n
        return total / count if count else float("nan")

    def validate(self) -> list[str]:
        """Problems found in complete videos (shape, frame count, non-finite values); empty when all is well."""
        problems = []
        geometry = self.geometry
        for v in self.ids():
            g = self._group(v)
            shape = g["features"].shape
            if shape[1:] != (self.n_crops, self.feature_dim):
                problems.append(
                    f"{v}: features shape {shape} does not match [T, {self.n_crops}, {self.feature_dim}]"
                )
                continue
            n_frames = int(g.attrs.get("n_frames", -1))
            if not self.pooled and n_frames >= 0 and geometry.n_snippets(n_frames) != shape[0]:
                problems.append(
                    f"{v}: {shape[0]} snippets but n_frames={n_frames} gives {geometry.n_snippets(n_frames)}"
                )
            if not np.isfinite(g["features"][()]).all():
                problems.append(f"{v}: NaN/Inf features")
        return problems

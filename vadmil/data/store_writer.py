"""Writing a feature store: the writer lock, pending files, the atomic commit (see :mod:`vadmil.data.store` for
the layout and the crash-safety design). :class:`StoreWriter` is the writing half of
:class:`~vadmil.data.store.FeatureStore`.

Hardening on top of the design: a store path that is a symlink is written through to the file it points at (the
lock, the pending folder, the segments and the new index sit beside that file, so the link is never replaced by a
copy); the partial files of a killed writer (a half-written index or segment, a segment no index links to) are
removed by the next writer; a commit checks the free space first (it writes the new videos once more, into a
segment, plus a small index) and a full disk is one line saying how much it needs, with the published store
untouched and the videos kept pending for the next writer.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from vadmil import __version__
from vadmil.data import store_layout as layout
from vadmil.data.recipe import recipe_differences
from vadmil.errors import VadmilError

log = logging.getLogger("vadmil.data.store")

# Written by this vadmil: v2 (videos may link into segment files). v1 stores (every video in the one file) are read
# as they are, and their next commit upgrades them (vadmil/data/store_layout.py).
SCHEMA_VERSION = 2
VIDEOS = layout.VIDEOS
EXTRA = "extra"  # group of a video's named extra streams (e.g. XD-Violence VGGish audio [T_a, 128])
INVALID_IDS = ("", ".", "..")  # not HDF5 group names: "." is the group itself
_CHUNK_BYTES = 64 * 2**20
_SPACE_MARGIN = 4 * 2**20  # HDF5 metadata and page slack on top of the data bytes
_INDEX_BYTES_PER_VIDEO = 512  # an external link in the index, with slack
_MANY_SEGMENTS = 100


class NoSpaceError(VadmilError):
    """Not enough disk space to write; nothing committed was changed. Stops a whole import/extraction."""


def store_path(path: str | os.PathLike) -> Path:
    """Where a store really is: a symlink's target (so writers replace the file, never the link)."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def id_problem(video_id: str) -> str | None:
    """Why ``video_id`` cannot name a video in a store, or None."""
    if video_id in INVALID_IDS or "/" in video_id:
        return f"invalid video id {video_id!r}: ids must be non-empty, not '.' or '..', and contain no '/'"
    return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _require_space(folder: Path, need: int, what: str, then: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need + _SPACE_MARGIN:
        raise NoSpaceError(
            f"not enough disk space for {what}: it needs about {_size(need + _SPACE_MARGIN)} in {folder}, which "
            f"has {_size(free)} free; free some space and re-run ({then})"
        )


def _write_video(
    group: h5py.Group, features: np.ndarray, attrs: Mapping, extra: Mapping | None = None
) -> None:
    """Write one video's dataset, extra streams and attributes into ``group``; ``complete`` last."""
    row_bytes = features.shape[1] * features.shape[2] * features.dtype.itemsize
    chunk_rows = max(1, min(features.shape[0], _CHUNK_BYTES // row_bytes))
    group.create_dataset("features", data=features, chunks=(chunk_rows, *features.shape[1:]))
    for name, stream in (extra or {}).items():
        group.create_dataset(f"{EXTRA}/{name}", data=np.asarray(stream))
    for key, value in attrs.items():
        group.attrs[key] = value
    group.attrs["complete"] = True


def _lock(path: Path) -> int:
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise VadmilError(
            f"feature store {path} is being written by another process; wait for it to finish or write to "
            "another output path"
        ) from None
    return lock_fd


def _remove_partial_copies(path: Path) -> None:
    """Temp files of a writer killed while creating, committing or compacting (we hold the lock: nobody else
    writes them)."""
    for stale in (path.with_name(f".{path.name}.new"), path.with_name(f".{path.name}.commit")):
        if stale.exists():
            log.warning("removing %s, a partial copy left by a writer that was killed", stale)
            stale.unlink()


class StoreWriter:
    """The writing methods of :class:`~vadmil.data.store.FeatureStore` (``create``, ``append``, ``commit``)."""

    @classmethod
    def create(cls, path: str | os.PathLike, recipe: Mapping):
        """Create a store with ``recipe`` (see :func:`~vadmil.data.recipe.make_recipe`), or reopen an existing one
        with the same recipe, for appending. Videos left pending by an interrupted writer are committed first."""
        path = store_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path)
        try:
            _remove_partial_copies(path)
            if not path.exists():
                tmp = path.with_name(f".{path.name}.new")
                with h5py.File(tmp, "w") as f:
                    f.attrs["schema_version"] = SCHEMA_VERSION
                    f.attrs["vadmil_version"] = __version__
                    for key, value in recipe.items():
                        f.attrs[key] = value
                    f.create_group(VIDEOS)
                _fsync(tmp)
                os.replace(tmp, path)
            store = cls(path)
            diffs = recipe_differences(store.attrs, recipe)
            if diffs:
                store.close()
                raise VadmilError(
                    f"feature store {path} was made with a different recipe ({'; '.join(diffs)}); "
                    "write to a new output path or use the store's recipe"
                )
        except BaseException:
            os.close(lock_fd)
            raise
        store.writable, store._lock_fd = True, lock_fd
        try:
            # segments no index links to: a killed commit's, or a compaction's that was killed before cleaning up
            layout.collect_garbage(path, {e.segment for e in store._index().values() if e.segment})
            store.commit()
        except BaseException:
            store.writable = False
            store.close()  # releases the lock
            raise
        return store

    def _require_writable(self) -> None:
        if not self.writable:
            raise VadmilError(
                f"feature store {self.path} is open read-only; open it with FeatureStore.create"
            )

    def append(
        self,
        video_id: str,
        features: np.ndarray,
        *,
        n_frames: int,
        fps: float,
        source: str = "",
        extra: Mapping[str, np.ndarray] | None = None,
        overwrite: bool = False,
        attrs: Mapping | None = None,
    ) -> bool:
        """Add one video's features [T, C, D] (and its declared extra streams, each [T_e, dim]); returns False
        (and writes nothing) when it is already in the store. ``attrs``: more per-video attributes (e.g. the
        extractor's ``duration_s``, ``time_source``, ``integrity``).

        The video is durable when this returns (a pending file); it joins the store file at the next commit.
        """
        self._require_writable()
        if problem := id_problem(video_id):
            raise VadmilError(problem)
        features = np.asarray(features)
        expected = (self.n_crops, self.feature_dim)
        if features.ndim != 3 or features.shape[1:] != expected or features.shape[0] < 1:
            raise VadmilError(
                f"video '{video_id}': features have shape {features.shape} but store {self.path} needs "
                f"[T>=1, {expected[0]}, {expected[1]}] (n_crops, feature_dim)"
            )
        stored = features.astype(np.dtype(str(self.file.attrs["feature_dtype"])))
        if not (np.isfinite(features).all() and np.isfinite(stored).all()):
            raise VadmilError(
                f"video '{video_id}': features contain NaN/Inf (or overflow {stored.dtype}); nothing was written for it"
            )
        extra = self._check_extra(video_id, extra or {})
        if video_id in self and not overwrite:
            return False
        attrs = {
            **{k: v for k, v in (attrs or {}).items() if k not in ("complete", "video_id")},
            "video_id": video_id,
            "n_frames": int(n_frames),
            "fps": float(fps),
            "source": str(source),
            # Mean L2 norm per snippet: tells apart feature lineages (e.g. I3D norms of ~22 vs ~2.5).
            "mean_norm": float(np.linalg.norm(features.astype(np.float32), axis=-1).mean()),
        }
        self.pending_dir.mkdir(exist_ok=True)
        need = stored.nbytes + sum(s.nbytes for s in extra.values())
        _require_space(self.pending_dir, need, f"video '{video_id}'", "the videos written so far are kept")
        final = self.pending_dir / f"{hashlib.sha1(video_id.encode()).hexdigest()}.h5"
        tmp = final.with_suffix(".tmp")
        handle = self._pending_handles.pop(video_id, None)
        if handle is not None:
            handle.close()
        try:
            with h5py.File(tmp, "w") as f:
                _write_video(f, stored, attrs, extra)
        except OSError as err:  # e.g. the disk filled up meanwhile
            tmp.unlink(missing_ok=True)
            raise NoSpaceError(
                f"cannot write video '{video_id}' to {self.pending_dir}: {' '.join(str(err).split())}"
            ) from None
        # No fsync (it tripled the append time): the rename alone makes a pending file whole-or-absent for a
        # killed process, whose writes survive in the page cache. Only a power loss can leave an unreadable one,
        # which readers skip (that video is re-appended on resume); the commit that publishes the store is synced.
        os.replace(tmp, final)
        self._pending()[video_id] = final
        return True

    def _check_extra(self, video_id: str, extra: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Extra streams as float32 [T_e, dim], checked against the store's declared streams."""
        declared, out = self.extra_streams, {}
        for name, stream in extra.items():
            stream = np.asarray(stream, dtype=np.float32)
            if name not in declared:
                raise VadmilError(
                    f"video '{video_id}': extra stream '{name}' is not declared by store {self.path} "
                    f"(declared: {sorted(declared) or 'none'}); create the store with extra_streams={{'{name}': dim}}"
                )
            if stream.ndim != 2 or stream.shape[1] != declared[name] or len(stream) < 1:
                raise VadmilError(
                    f"video '{video_id}': extra stream '{name}' has shape {stream.shape}; the store needs "
                    f"[T>=1, {declared[name]}]"
                )
            if not np.isfinite(stream).all():
                raise VadmilError(
                    f"video '{video_id}': extra stream '{name}' contains NaN/Inf; nothing was written"
                )
            out[name] = stream
        return out

    def commit(self) -> int:
        """Move pending videos into the store: write them into a new segment file, then atomically replace the
        store file by a new index that links to it too (:mod:`vadmil.data.store_layout`). Returns how many."""
        self._require_writable()
        pending = {}
        for video_id, src_path in self._pending().items():
            if problem := id_problem(video_id):  # written by an older vadmil: it would wedge every commit
                log.warning("dropping pending file %s: %s", src_path, problem)
                src_path.unlink(missing_ok=True)
            else:
                pending[video_id] = src_path
        if not pending:
            self._remove_pending_dir()
            return 0
        committed = {v: e for v, e in self._index().items() if e.complete}
        folder = layout.segments_dir(self.path)
        index = self.path.with_name(f".{self.path.name}.commit")
        segment = folder / layout.next_segment(folder)
        tmp = segment.with_suffix(".tmp")
        need = sum(p.stat().st_size for p in pending.values())
        need += _INDEX_BYTES_PER_VIDEO * (len(committed) + len(pending))
        then = f"the {len(pending)} video(s) wait in {self.pending_dir} and the next writer commits them"
        _require_space(self.path.parent, need, f"committing {len(pending)} video(s) to {self.path}", then)
        try:
            folder.mkdir(exist_ok=True)
            with h5py.File(tmp, "w") as out:
                out.attrs["schema_version"] = SCHEMA_VERSION
                out.attrs["segment_of"] = self.path.name
                videos = out.create_group(VIDEOS)
                for video_id, src_path in pending.items():
                    with h5py.File(src_path, "r") as src:
                        attrs = {k: v for k, v in src.attrs.items() if k not in ("video_id", "complete")}
                        extra = {name: ds[()] for name, ds in src.get(EXTRA, {}).items()}
                        _write_video(videos.create_group(video_id), src["features"][()], attrs, extra)
            _fsync(tmp)
            os.replace(tmp, segment)
            # videos inside the store file itself (a v1 or compacted store): that file becomes a segment
            base = None
            if any(e.segment is None for e in committed.values()):
                base = layout.absorb(self.path, folder, _fsync)
            _fsync(folder)
            links = {v: (e.segment or base, e.path) for v, e in committed.items()}
            links.update({v: (f"{folder.name}/{segment.name}", f"/{VIDEOS}/{v}") for v in pending})
            layout.write_index(index, self.file.attrs, links, SCHEMA_VERSION)
            _fsync(index)
        except OSError as err:
            for partial in (tmp, segment, index):  # nothing links to them yet
                partial.unlink(missing_ok=True)
            kind = (
                NoSpaceError if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else VadmilError
            )
            raise kind(
                f"cannot commit {len(pending)} video(s) to {self.path} (store unchanged; {then}): "
                f"{' '.join(str(err).split())}"
            ) from None
        self._release_handles()
        os.replace(index, self.path)
        _fsync(self.path.parent)
        for src_path in pending.values():
            src_path.unlink()
        self._remove_pending_dir()
        segments = {s for s, _ in links.values()}
        layout.collect_garbage(self.path, segments)  # e.g. every video overwritten
        if len(segments) > _MANY_SEGMENTS:  # each is a file readers keep open
            log.info("%s has %d segment files; `vadmil store compact store=%s` gathers them into one file",
                     self.path, len(segments), self.path)  # fmt: skip
        return len(pending)

    def _remove_pending_dir(self) -> None:
        if self.pending_dir.is_dir():
            # Anything left is garbage: temp files of a killed writer, or files a power loss made unreadable.
            for stale in self.pending_dir.iterdir():  # (we hold the writer lock)
                stale.unlink()
            self.pending_dir.rmdir()

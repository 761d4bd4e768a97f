"""The HDF5 feature store (schema v1): the only link between feature extraction and training.

Layout::

    /                      root attributes: the recipe (schema_version, backbone, feature_dim, n_crops, ...)
    /videos/<video_id>/    one group per video
        features           dataset [T, C, D] (float16 or float32), uncompressed, chunked per video
        attrs              n_frames, fps, source, mean_norm, complete (set last, after the data is written)

Crash safety. HDF5 has no atomic commit: a process killed while HDF5 flushes metadata can leave a file that no
longer opens (measured: about half of the write points of an in-place append). So a writer never modifies the
published file in place:

- ``append`` writes each video to its own small file in ``<store>.pending/``, renamed into place only once
  complete and synced — a pending file either exists whole or not at all;
- ``commit`` (on ``close``, or when called) copies the store, adds the pending videos to the copy, syncs it and
  atomically renames it over the store, then deletes the pending files.

A kill at any moment leaves the last committed store intact plus complete pending files; readers see both, and the
next writer commits them first. A writer holds an exclusive lock (``<store>.lock``) so two writers never race.
Handles are opened lazily and reopened after a fork, so one reader can be handed to DataLoader workers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from vadmil import __version__
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import plain_attr, recipe_differences, recipe_of
from vadmil.errors import VadmilError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
VIDEOS = "videos"
EXTRA = "extra"  # group of a video's named extra streams (e.g. XD-Violence VGGish audio [T_a, 128])
_CHUNK_BYTES = 64 * 2**20


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class FeatureStore:
    """Read and append per-video snippet features.

    ``FeatureStore(path)`` opens an existing store for reading; ``FeatureStore.create(path, recipe)`` makes a new
    one, or reopens an existing one with the same recipe, for appending (use it as a context manager, or call
    ``close()``, so the appended videos are committed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.writable = False
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._lock_fd: int | None = None
        self._pending_handles: dict[str, h5py.File] = {}
        self._pending_index: dict[str, Path] | None = None
        self._check()

    # ---- opening -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, recipe: Mapping) -> FeatureStore:
        """Create a store with ``recipe`` (see :func:`~vadmil.data.recipe.make_recipe`), or reopen an existing one with the same recipe,
        for appending. Videos left pending by an interrupted writer are committed first."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise VadmilError(
                f"feature store {path} is being written by another process; wait for it to finish or write to "
                "another output path"
            ) from None
        try:
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
            store.commit()
        except BaseException:
            store.writable = False
            store.close()  # releases the lock
            raise
        return store

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
        elif int(version) != SCHEMA_VERSION:
            problem = (
                f"feature store {self.path} has schema version {int(version)} but this vadmil "
                f"({__version__}) reads version {SCHEMA_VERSION}; re-create the store or install a matching vadmil"
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
        return self._file

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
        for h in self._pending_handles.values():
            h.close()
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pending_handles, self._pending_index = None, {}, None

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
        videos = self.file[VIDEOS]
        return [v for v in videos if not complete_only or bool(videos[v].attrs.get("complete", False))]

    def ids(self, complete_only: bool = True) -> list[str]:
        """Video ids in the store (committed and pending), sorted; videos whose write never completed are left
        out unless asked for."""
        pending = self._pending()  # first: it may reopen the store file
        return sorted(set(self._committed(complete_only)) | set(pending))

    def __contains__(self, video_id: str) -> bool:
        if video_id in self._pending():  # first: it may reopen the store file
            return True
        g = self.file[VIDEOS].get(video_id)
        return g is not None and bool(g.attrs.get("complete", False))

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
        g = self.file[VIDEOS].get(video_id)
        if g is not None and bool(g.attrs.get("complete", False)):
            return g
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
    ) -> bool:
        """Add one video's features [T, C, D] (and its declared extra streams, each [T_e, dim]); returns False
        (and writes nothing) when it is already in the store.

        The video is durable when this returns (a pending file); it joins the store file at the next commit.
        """
        if not self.writable:
            raise VadmilError(
                f"feature store {self.path} is open read-only; open it with FeatureStore.create"
            )
        if not video_id or "/" in video_id:
            raise VadmilError(f"invalid video id {video_id!r}: ids must be non-empty and contain no '/'")
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
            "video_id": video_id,
            "n_frames": int(n_frames),
            "fps": float(fps),
            "source": str(source),
            # Mean L2 norm per snippet: tells apart feature lineages (e.g. I3D norms of ~22 vs ~2.5).
            "mean_norm": float(np.linalg.norm(features.astype(np.float32), axis=-1).mean()),
        }
        self.pending_dir.mkdir(exist_ok=True)
        final = self.pending_dir / f"{hashlib.sha1(video_id.encode()).hexdigest()}.h5"
        tmp = final.with_suffix(".tmp")
        handle = self._pending_handles.pop(video_id, None)
        if handle is not None:
            handle.close()
        with h5py.File(tmp, "w") as f:
            _write_video(f, stored, attrs, extra)
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
        """Move pending videos into the store file: copy, add, sync, atomically rename. Returns how many."""
        if not self.writable:
            raise VadmilError(
                f"feature store {self.path} is open read-only; open it with FeatureStore.create"
            )
        pending = dict(self._pending())
        if not pending:
            self._remove_pending_dir()
            return 0
        tmp = self.path.with_name(f".{self.path.name}.commit")
        shutil.copyfile(self.path, tmp)
        with h5py.File(tmp, "a") as out:
            videos = out[VIDEOS]
            for video_id, src_path in pending.items():
                with h5py.File(src_path, "r") as src:
                    if video_id in videos:
                        del videos[video_id]
                    attrs = {k: v for k, v in src.attrs.items() if k not in ("video_id", "complete")}
                    extra = {name: ds[()] for name, ds in src.get(EXTRA, {}).items()}
                    _write_video(videos.create_group(video_id), src["features"][()], attrs, extra)
        _fsync(tmp)
        self._release_handles()
        os.replace(tmp, self.path)
        _fsync(self.path.parent)
        for src_path in pending.values():
            src_path.unlink()
        self._remove_pending_dir()
        return len(pending)

    def _remove_pending_dir(self) -> None:
        if self.pending_dir.is_dir():
            # Anything left is garbage: temp files of a killed writer, or files a power loss made unreadable.
            for stale in self.pending_dir.iterdir():  # (we hold the writer lock)
                stale.unlink()
            self.pending_dir.rmdir()

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

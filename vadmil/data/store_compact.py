"""`vadmil store compact`: rewrite a feature store into one self-contained file (no segment folder, no pending
videos) — to share it, or to gather the segments of many commits.

In place, the writer lock is held (pending videos are committed first), the new file is written beside the store,
synced and atomically renamed over it, and only then are the segments deleted: a kill at any point leaves either
the old store or the compacted one, each opening with every committed video exact (the next writer removes the
leftovers). With ``output``, the store is only read (a consistent snapshot: segments are immutable) and the copy
is written to ``output`` the same way; the store is not changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
from tqdm import tqdm

from vadmil.data import store_layout as layout
from vadmil.data import store_writer
from vadmil.data.store import FeatureStore
from vadmil.data.store_writer import (
    EXTRA,
    SCHEMA_VERSION,
    VIDEOS,
    _lock,
    _remove_partial_copies,
    _require_space,
    store_path,
)  # fmt: skip
from vadmil.errors import VadmilError


def _footprint(path: Path) -> int:
    """Bytes of a store on disk: its file, its segments and its pending videos."""
    files = [
        path,
        *(p for suffix in (".segments", ".pending") for p in path.with_name(path.name + suffix).glob("*")),
    ]
    return sum(f.stat().st_size for f in files if f.is_file())


def _data_bytes(group: h5py.Group) -> int:
    streams = [group["features"], *group.get(EXTRA, {}).values()]
    return sum(ds.id.get_storage_size() for ds in streams)


def _write_compact(store: FeatureStore, tmp: Path, progress: bool) -> int:
    """Every video of ``store`` (committed and pending), copied into a new self-contained file ``tmp``."""
    ids = store.ids()
    need = sum(_data_bytes(store._group(v)) for v in ids)
    _require_space(tmp.parent, need, f"compacting {store.path}", "nothing was changed")
    try:
        with h5py.File(tmp, "w") as out:
            for key, value in store.file.attrs.items():
                out.attrs[key] = value
            out.attrs["schema_version"] = SCHEMA_VERSION
            videos = out.create_group(VIDEOS)
            for video_id in tqdm(ids, desc=f"compact {store.path.name}", unit="video", disable=not progress):
                group = store._group(video_id)
                out.copy(group, videos, name=video_id)  # datasets, chunking and attributes as they are
                videos[video_id].attrs.pop("video_id", None)  # a pending file's own id attribute
        store_writer._fsync(tmp)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise VadmilError(
            f"cannot compact {store.path} (nothing was changed): {' '.join(str(err).split())}"
        ) from None
    return len(ids)


def compact(
    store: str | os.PathLike, output: str | os.PathLike | None = None, progress: bool = False
) -> dict:
    """Rewrite ``store`` into one self-contained file: in place, or into ``output`` (then ``store`` is only read).
    Returns ``{"videos", "bytes_before", "bytes_after", "output"}``."""
    path = store_path(store)
    target = path if output is None else store_path(output)
    if target.exists() and os.path.samefile(target, path):  # the store itself, however it was spelled
        target = path
    FeatureStore(path).close()  # a clear error for a missing, foreign or damaged store, before any lock
    before = _footprint(path)
    if target == path:
        reader = FeatureStore(path)
        if not reader._pending() and all(e.segment is None for e in reader._index().values()):
            reader.close()  # already one file: nothing to do
            return {"videos": len(reader), "bytes_before": before, "bytes_after": before, "output": str(path)}
        recipe = {k: v for k, v in reader.attrs.items() if k not in ("schema_version", "vadmil_version")}
        reader.close()
        with FeatureStore.create(path, recipe) as writer:  # the lock; pending videos committed first
            tmp = path.with_name(f".{path.name}.commit")
            n = _write_compact(writer, tmp, progress)
            writer._release_handles()
            os.replace(tmp, path)
            store_writer._fsync(path.parent)
            layout.collect_garbage(path, set())  # nothing links to the segments any more
    else:
        if target.exists():
            raise VadmilError(
                f"output {target} already exists; choose another output path, or delete it first"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(target)
        try:
            _remove_partial_copies(target)
            tmp = target.with_name(f".{target.name}.new")
            with FeatureStore(path) as reader:
                n = _write_compact(reader, tmp, progress)
            os.replace(tmp, target)
            store_writer._fsync(target.parent)
        finally:
            os.close(lock_fd)
            Path(f"{target}.lock").unlink(missing_ok=True)
    return {"videos": n, "bytes_before": before, "bytes_after": target.stat().st_size, "output": str(target)}

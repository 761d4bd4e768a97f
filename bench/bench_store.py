"""What a store commit costs: appending 10 videos to stores of 1 GB and 10 GB, with the v1 commit (copy the whole
store, add the videos, sync, rename: vadmil before schema v2) and the v2 commit (a segment of the new videos + a new
index of links: vadmil/data/store_layout.py) side by side in one run, on the same store.

    python bench/bench_store.py [--sizes-gb 1,10] [--dir /tmp]

Per size: a v1 store of that many bytes is written directly (videos of 10 crops x 2048 float16, 200 snippets,
7.8 MiB each); then 10 videos are appended (pending files: the same for both) and committed the v1 way; then 10 more
are appended and committed by vadmil (the first v2 commit of a v1 store links it in as a segment: no copy), then
twice more on the now segmented store. Reported per commit: seconds, and extra disk (peak: what the commit writes
beside the published store before it replaces it; kept: how much the store grew). Needs free space of about
2.1 x the largest size in --dir; everything is deleted at the end.
"""

from __future__ import annotations

import argparse
import errno
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from vadmil.data import store_writer
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.store_layout import segments_dir

T, C, D = 200, 10, 2048
VIDEO_BYTES = T * C * D * 2  # float16
RECIPE = make_recipe(backbone="bench", feature_dim=D, n_crops=C, feature_dtype="float16")


def _block(i: int) -> np.ndarray:
    # distinct per video, cheap to make: one random block shifted by the video number
    return (np.random.default_rng(0).standard_normal((T, C, D), dtype=np.float32) + i * 1e-3).astype(
        np.float16
    )


def write_v1_store(path: Path, n_videos: int) -> None:
    """A v1 store (every video inside the one file), written directly: the fastest way to get GBs of store."""
    block = _block(0)
    with h5py.File(path, "w") as f:
        for key, value in {**RECIPE, "schema_version": 1, "vadmil_version": "0.1.0"}.items():
            f.attrs[key] = value
        videos = f.create_group("videos")
        for i in range(n_videos):
            g = videos.create_group(f"base{i:05d}")
            store_writer._write_video(
                g, block, {"n_frames": T * 16, "fps": 30.0, "source": "", "mean_norm": 1.0}
            )
    store_writer._fsync(path)


def v1_commit(store: FeatureStore) -> int:
    """The v1 commit, as vadmil did it before schema v2 (store_writer.commit at 885c4d5): copy the store, add the
    pending videos to the copy, sync it, rename it over the store, delete the pending files. Returns the peak extra
    bytes (the copy, beside the published store)."""
    pending = dict(store._pending())
    tmp = store.path.with_name(f".{store.path.name}.commit")
    try:
        shutil.copyfile(store.path, tmp)
        with h5py.File(tmp, "a") as out:
            for video_id, src_path in pending.items():
                with h5py.File(src_path, "r") as src:
                    attrs = {k: v for k, v in src.attrs.items() if k not in ("video_id", "complete")}
                    store_writer._write_video(
                        out["videos"].create_group(video_id), src["features"][()], attrs
                    )
        store_writer._fsync(tmp)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SystemExit(
            f"bench_store: {err} ({'disk full' if err.errno == errno.ENOSPC else 'error'})"
        ) from None
    peak = tmp.stat().st_size
    store._release_handles()
    os.replace(tmp, store.path)
    store_writer._fsync(store.path.parent)
    for src_path in pending.values():
        src_path.unlink()
    return peak


def footprint(path: Path) -> int:
    files = [path, *segments_dir(path).glob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def append_and_commit(path: Path, first: int, how: str) -> dict:
    """Append 10 new videos (pending files) and commit them ``how`` ("v1" or "v2"); the commit is timed."""
    before = footprint(path)
    segments, old_inode = set(segments_dir(path).glob("*.h5")), path.stat().st_ino
    store = FeatureStore.create(path, RECIPE)
    for i in range(first, first + 10):
        store.append(f"new{i:05d}", _block(i), n_frames=T * 16, fps=30.0)
    pending = sum(p.stat().st_size for p in store.pending_dir.glob("*.h5"))
    start = time.perf_counter()
    if how == "v1":
        peak = v1_commit(store)
        store._pending_index = None
    else:
        store.commit()
        new_segments = set(segments_dir(path).glob("*.h5")) - segments
        # the new segment and the new index (a v1 file linked in as a segment costs no bytes: same inode)
        peak = path.stat().st_size + sum(
            s.stat().st_size for s in new_segments if s.stat().st_ino != old_inode
        )
    seconds = time.perf_counter() - start
    store.close()
    return {"seconds": seconds, "peak": peak, "kept": footprint(path) - before, "pending": pending}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-gb", default="1,10", help="store sizes in GB (10^9 bytes), comma-separated")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the stores")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_gb.split(",")]
    free = shutil.disk_usage(args.dir).free
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; h5py {h5py.__version__}"
          f" (HDF5 {h5py.version.hdf5_version}); {args.dir}: {free / 2**30:.1f} GiB free")  # fmt: skip
    if free < 2.1 * max(sizes) * 1e9:
        raise SystemExit(
            f"bench_store: {args.dir} has {free / 1e9:.1f} GB free; it needs {2.1 * max(sizes):.1f}"
        )
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_store_") as tmp:
            path = Path(tmp) / "store.h5"
            n = max(1, round(size * 1e9 / VIDEO_BYTES))
            start = time.perf_counter()
            write_v1_store(path, n)
            print(f"{size:g} GB: {n} videos, {path.stat().st_size / 1e9:.2f} GB written in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
            v1 = append_and_commit(path, 0, "v1")
            v2 = [append_and_commit(path, 10 * k, "v2") for k in (1, 2, 3, 4)]
            rows.append((size, n, v1, v2, path.stat().st_size))
            print(f"  v1 commit {v1['seconds']:.2f} s; v2 commits " + ", ".join(f"{r['seconds']:.2f}" for r in v2) + " s",
                  flush=True)  # fmt: skip
    mib = 2**20
    print("\n| store | commit | s | peak extra disk | store growth | note |\n|---|---|---|---|---|---|")
    for size, n, v1, v2, index in rows:
        later = statistics.median(r["seconds"] for r in v2[1:])
        print(f"| {size:g} GB ({n} videos) | v1: copy + add + rename | {v1['seconds']:.2f} | "
              f"{v1['peak'] / mib:,.0f} MiB | {v1['kept'] / mib:.0f} MiB | the 10 new videos: "
              f"{v1['pending'] / mib:.0f} MiB |")  # fmt: skip
        print(f"| {size:g} GB | v2, first (links the v1 file in) | {v2[0]['seconds']:.2f} | "
              f"{v2[0]['peak'] / mib:,.0f} MiB | {v2[0]['kept'] / mib:.0f} MiB | "
              f"{v1['seconds'] / v2[0]['seconds']:.1f}x faster than v1 |")  # fmt: skip
        print(f"| {size:g} GB | v2, segmented (median of 3) | {later:.2f} | "
              f"{statistics.median(r['peak'] for r in v2[1:]) / mib:,.0f} MiB | "
              f"{statistics.median(r['kept'] for r in v2[1:]) / mib:.0f} MiB | {v1['seconds'] / later:.1f}x faster "
              f"than v1; index {index / 1024:.0f} KiB |")  # fmt: skip


if __name__ == "__main__":
    main()

"""What the split checks at setup cost (vadmil/data/checks.py): every video's shape, finiteness and intervals,
before any training, against a plain read of the same features — side by side, medians of 3, warm page cache.

    .venv/bin/python bench/bench_checks.py
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from bench_train import timeit  # bench/ is sys.path[0] when a bench runs as a script

from vadmil.data.checks import check_split
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import VideoLabel
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore


def rate(fn, n_videos: int, repeats: int = 3) -> float:
    """Median videos/s of ``fn`` (one warm-up call first)."""
    return n_videos / timeit(fn, repeats, warmup=1)


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = make_recipe(
            backbone="bench", feature_dim=2048, n_crops=10, geometry=SnippetGeometry(16, 16, "drop")
        )
        videos = {}
        with FeatureStore.create(Path(tmp) / "b.h5", recipe) as store:
            for i in range(40):
                t = int(rng.integers(50, 400))
                store.append(f"v{i}", rng.random((t, 10, 2048), dtype=np.float32), n_frames=t * 16, fps=30)
                videos[f"v{i}"] = VideoLabel(f"v{i}", i % 2, ((0, t * 8),) if i % 2 else ())
        store = FeatureStore(Path(tmp) / "b.h5")
        size = sum(store.features(v).nbytes for v in videos) / 2**20
        checks = rate(lambda: check_split(store, videos, "test"), len(videos))
        reads = rate(lambda: [store.read(v) for v in videos], len(videos))
        store.close()
    print("| measurement | result | note |\n|---|---|---|")
    print(f"| split checks at setup, 10 x 2048 float32, T 50-400 | {checks:.0f} videos/s | "
          f"{checks / reads:.2f}x the rate of a plain store.read of the same {len(videos)} videos "
          f"({reads:.0f}/s, {size:.0f} MiB), same run, medians of 3 |")  # fmt: skip


if __name__ == "__main__":
    main()

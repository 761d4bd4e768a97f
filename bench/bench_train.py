"""Benchmarks of the training spine on this machine: FCN step time, bag pooling, frame metrics.

Run with `make bench`; paste the printed table into docs/benchmarks.md with the machine details it prints.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from vadmil.data.bags import pool_segments
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.evaluation.metrics import FrameAnomalyMetrics
from vadmil.heads.fcn import FCNHead
from vadmil.losses.objective import Objective
from vadmil.losses.ranking import MILRankingLoss
from vadmil.losses.regularizers import SmoothnessLoss, SparsityLoss
from vadmil.training.module import MILModule


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fcn_step(dim: int, dropout: float) -> float:
    """One Sultani training step (30 + 30 bags x 32 segments, Adagrad) in seconds."""
    terms = {
        "ranking": {"loss": MILRankingLoss(), "weight": 1.0},
        "smoothness": {"loss": SmoothnessLoss(), "weight": 8e-5},
        "sparsity": {"loss": SparsityLoss(), "weight": 8e-5},
    }
    module = MILModule(FCNHead(dim, dropout=dropout), Objective(terms))
    optimizer = torch.optim.Adagrad(module.parameters(), lr=0.01, weight_decay=0.002)
    batch = {"x": torch.randn(60, 1, 32, dim), "mask": torch.ones(60, 32, dtype=torch.bool),
             "label": torch.tensor([1.0] * 30 + [0.0] * 30)}  # fmt: skip
    module.train()

    def step():
        optimizer.zero_grad()
        loss, _ = module.objective(module(batch["x"], batch["mask"]), batch)
        loss.backward()
        optimizer.step()

    return timeit(step, 20)


def pooling(store: FeatureStore, ids: list[str]) -> float:
    """Videos per second: read from the store + pool to 32 segments."""
    start = time.perf_counter()
    for v in ids:
        pool_segments(store.read(v), 32)
    return len(ids) / (time.perf_counter() - start)


def append_rates(tmp: Path, videos: list[np.ndarray], repeats: int = 3) -> tuple[float, float]:
    """Median videos/s written by FeatureStore (pending files + one synced commit) and by plain in-place h5py
    writes (not crash-safe), alternating the two so page-cache state favours neither."""
    recipe = make_recipe(backbone="bench", feature_dim=videos[0].shape[2], n_crops=videos[0].shape[1])

    def safe():
        with FeatureStore.create(tmp / "safe.h5", recipe) as store:
            for i, x in enumerate(videos):
                store.append(f"v{i}", x, n_frames=16 * len(x), fps=30)

    def plain():
        with h5py.File(tmp / "plain.h5", "w") as f:
            for i, x in enumerate(videos):
                g = f.create_group(f"videos/v{i}")
                g.create_dataset("features", data=x)
                g.attrs["complete"] = True
                f.flush()

    times = {safe: [], plain: []}
    for _ in range(repeats):
        for fn in (plain, safe):
            for f in tmp.glob("*.h5*"):
                f.unlink()
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return len(videos) / float(np.median(times[safe])), len(videos) / float(np.median(times[plain]))


def metrics_time(n_frames: int) -> float:
    rng = np.random.default_rng(0)
    lengths = rng.integers(800, 8000, size=n_frames // 4000)
    metric = FrameAnomalyMetrics()
    for i, n in enumerate(lengths):
        labels = torch.zeros(int(n), dtype=torch.long)
        if i % 2:
            labels[int(n) // 3 : int(n) // 2] = 1
        scores = torch.from_numpy(np.repeat(rng.random(int(n) // 16 + 1), 16)[: int(n)]).float()
        metric.update(scores, labels, i % 2)
    start = time.perf_counter()
    metric.compute()
    return time.perf_counter() - start, int(lengths.sum())


def main() -> None:
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")  # fmt: skip
    rows = []
    for dim in (2048, 4096):
        with_dropout, without = fcn_step(dim, 0.6), fcn_step(dim, 0.0)
        rows.append((f"FCN train step, 60 bags x 32 x {dim}", f"{with_dropout * 1e3:.1f} ms",
                     f"dropout share {(with_dropout - without) / with_dropout:.0%}"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        recipe = make_recipe(
            backbone="bench", feature_dim=2048, n_crops=10, geometry=SnippetGeometry(16, 16, "drop")
        )
        store = FeatureStore.create(Path(tmp) / "b.h5", recipe)
        rng = np.random.default_rng(0)
        ids = [f"v{i}" for i in range(40)]
        for v in ids:
            t = int(rng.integers(50, 400))
            store.append(v, rng.random((t, 10, 2048), dtype=np.float32), n_frames=t * 16, fps=30)
        store.close()
        store = FeatureStore(Path(tmp) / "b.h5")
        rows.append(
            ("store read + pool, 10 x 2048, T 50-400", f"{pooling(store, ids):.0f} videos/s", "warm cache")
        )
        store.close()
        videos = [rng.random((int(rng.integers(50, 400)), 10, 2048), dtype=np.float32) for _ in range(40)]
        safe, plain = append_rates(Path(tmp), videos)
        rows.append(("store append (pending file + commit), 10 x 2048", f"{safe:.1f} videos/s",
                     f"{safe / plain:.2f}x the rate of unsafe in-place h5py writes ({plain:.1f}/s), same run, medians of 3"))  # fmt: skip
    seconds, frames = metrics_time(1_100_000)
    rows.append((f"frame metrics on {frames / 1e6:.2f} M frames", f"{seconds:.2f} s", "all five metrics"))
    print("| measurement | result | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

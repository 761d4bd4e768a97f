"""Per-head benchmark: training step time at each head's paper batch (D=2048, 10 crops, 32 segments, unless
PROTOCOL gives the head its own), the share of step time spent waiting for data, peak memory, and scoring time
on a UCF-Crime-sized test set.

Run with `make bench` (CPU) or `python bench/bench_heads.py --device cuda [--precision bf16]` on a GPU. Each
head runs in its own process so peak memory is its own. Paste the printed table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

# model → the experiment that carries its paper batch size (UCF-Crime)
EXPERIMENTS = {
    "fcn": "sultani_ucf_crime",
    "gcn": "gcn_ucf_crime",
    "gcn_hlnet": "hlnet_xd_violence",
    "rtfm": "rtfm_ucf_crime",
    "dted": "dted_ucf_crime",
    "urdmu": "urdmu_ucf_crime",
    "mgfn": "mgfn_ucf_crime",
}
# model → (feature dim, extra overrides) where its paper's data protocol differs from 2048-d x 32 segments
PROTOCOL = {
    "urdmu": (1024, ["data.n_segments=200"])
}  # 1024-d I3D, 200 segments, crops independent (experiment)
DEFAULT_PROTOCOL = (2048, ["data.n_segments=32"])
UCF_TEST_VIDEOS, UCF_TEST_FRAMES = 290, 1_110_000


def make_store(path: Path, dim: int = 2048) -> None:
    from vadmil.data.synthetic import SyntheticSpec, generate

    spec = SyntheticSpec(n_train_normal=40, n_train_abnormal=40, n_test_normal=1, n_test_abnormal=1,
                         feature_dim=dim, n_crops=10, min_snippets=32, max_snippets=64)  # fmt: skip
    generate(path, path.with_suffix(".json"), spec)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _config(model: str, store: Path):
    from hydra import compose, initialize_config_dir

    from vadmil.commands.base import config_dir

    _, extra = PROTOCOL.get(model, DEFAULT_PROTOCOL)
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", [f"experiment={EXPERIMENTS[model]}", f"model={model}", "dataset=manifest",
                                 f"dataset.store={store}", f"dataset.annotations.path={store.with_suffix('.json')}",
                                 *extra, "data.short_videos=repeat"])  # fmt: skip


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_one(model: str, store: Path, device: str, precision: str, steps: int, eval_fraction: float) -> dict:
    from vadmil.training.module import MILModule
    from vadmil.training.train import load_annotations, make_datamodule

    torch.manual_seed(0)
    cfg = _config(model, store)
    train_videos, test_videos = load_annotations(cfg.dataset)
    dm = make_datamodule(cfg, train_videos, test_videos, num_workers=0)
    dm.setup("fit")
    module = MILModule.from_config(cfg, dm.feature_dim).to(device)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    autocast = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    batches = iter(dm.train_dataloader())
    module.train()
    waits, totals = [], []
    rss_before = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(dm.train_dataloader())
            batch = next(batches)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        got = time.perf_counter()
        with autocast:
            loss, _ = module.objective(module(batch["x"], batch["mask"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        if i:
            waits.append(got - start)
            totals.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before)  # fmt: skip
    return {
        "model": model, "batch": int(cfg.data.batch_size), "crops": int(batch["x"].shape[1]), "dim": dm.feature_dim,
        "params": module.n_parameters, "step_s": float(np.median(totals)),
        "data_wait_share": float(np.sum(waits) / np.sum(totals)), "peak_mb": float(peak),
        **bench_scoring(module, device, autocast, eval_fraction, dm.n_crops, dm.feature_dim),
    }  # fmt: skip


@torch.inference_mode()
def bench_scoring(
    module, device: str, autocast, fraction: float, crops: int, dim: int, batch_size: int = 8
) -> dict:
    """Scoring of UCF-Crime-sized test data (290 videos, ≈1.1 M frames = 69,375 snippets, 10 crops, 2048-d).

    Features are random tensors made outside the timed region (store reading is measured in bench_train.py);
    on CPU a fraction of the videos is scored and the time scaled up linearly.
    """
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(mean=0.0, sigma=0.8, size=UCF_TEST_VIDEOS)
    lengths = np.maximum(1, np.round(lengths / lengths.sum() * UCF_TEST_FRAMES / 16)).astype(int)
    n = max(1, round(UCF_TEST_VIDEOS * fraction))
    subset = lengths[:n]
    module.eval()
    seconds = 0.0
    for start in range(0, n, batch_size):
        chunk = subset[start : start + batch_size]
        t = int(chunk.max())
        x = torch.randn(len(chunk), crops, t, dim, device=device)
        mask = torch.arange(t, device=device)[None, :] < torch.as_tensor(chunk, device=device)[:, None]
        _sync(device)
        begin = time.perf_counter()
        with autocast:
            module(x, mask).video_scores.float().cpu()
        seconds += time.perf_counter() - begin
    scale = lengths.sum() / subset.sum()
    return {"eval_fraction": float(subset.sum() / lengths.sum()), "eval_s": seconds * scale}


def frame_metrics_seconds() -> float:
    """The five frame metrics over UCF-Crime's test frame count, 290 videos (half abnormal)."""
    from vadmil.evaluation.metrics import FrameAnomalyMetrics

    rng = np.random.default_rng(0)
    per_video = UCF_TEST_FRAMES // UCF_TEST_VIDEOS
    videos = [(torch.from_numpy(rng.random(per_video)).float(), torch.from_numpy(rng.random(per_video) < 0.2).long(),
               i % 2) for i in range(UCF_TEST_VIDEOS)]  # fmt: skip
    metric = FrameAnomalyMetrics()
    start = time.perf_counter()
    for scores, labels, video_label in videos:
        metric.update(scores, labels * video_label, video_label)
    metric.compute()
    return time.perf_counter() - start


def demo_step_ms(spec: str, steps: int = 7) -> dict:
    """Median training step at demo scale: 20 bags x 1 crop x 32 segments x 2048-d (the demo store: X3D-XS's pooled
    feature), one thread (as each demo job).

    ``spec``: ``model[:override...]``, e.g. ``urdmu:sweep=demo`` (the demo sweep's head widths).
    """
    from hydra import compose, initialize_config_dir

    from vadmil.commands.base import config_dir
    from vadmil.training.module import MILModule

    model, *extra = spec.split(":")
    if "sweep=demo" in extra:  # the demo sweep needs a store and manifest to compose; they are not read here
        extra += ["dataset.store=unused.h5", "dataset.annotations.path=unused.json"]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", [f"model={model}", *extra])
    torch.manual_seed(0)
    dim, bags, t = 2048, 20, 32
    module = MILModule.from_config(cfg, in_dim=dim).train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    batch = {"x": torch.randn(bags, 1, t, dim), "mask": torch.ones(bags, t, dtype=torch.bool),
             "label": torch.tensor([0.0, 1.0]).repeat_interleave(bags // 2)}  # fmt: skip
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss, _ = module.objective(module(batch["x"], batch["mask"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"model": spec, "params": module.n_parameters, "step_ms": float(np.median(times[1:])) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: 3 CPU, 20 GPU)")
    parser.add_argument("--eval-fraction", type=float, default=None, help="share of test videos scored")
    parser.add_argument("--models", default=",".join(EXPERIMENTS))
    parser.add_argument("--demo-scale", help="instead: demo-scale step times of model[:override...],... "
                        "(e.g. fcn,rtfm,urdmu,urdmu:sweep=demo)")  # fmt: skip
    parser.add_argument("--dim", type=int, default=None, help="feature dimension of the synthetic store "
                        "(default: each head's protocol; bench_gpu --tiny: 32)")  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.demo_scale:
        from vadmil.commands.base import flush_denormals

        flush_denormals()
        torch.set_num_threads(1)
        print("| model | params | step |\n|---|---|---|")
        for spec in args.demo_scale.split(","):
            r = demo_step_ms(spec)
            print(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['step_ms']:.0f} ms |", flush=True)
        return
    gpu = args.device == "cuda"
    steps = args.steps or (20 if gpu else 3)
    fraction = args.eval_fraction or (1.0 if gpu else 0.05)
    if args.one:
        from vadmil.commands.base import flush_denormals

        flush_denormals()  # as every vadmil command does
        torch.set_num_threads(os.cpu_count() or 1)
        print(json.dumps(bench_one(args.one, Path(args.store), args.device, args.precision, steps, fraction)))
        return
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, device {args.device} {torch.cuda.get_device_name() if gpu else ''}, {args.precision}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for model in args.models.split(","):
            dim = args.dim or PROTOCOL.get(model, DEFAULT_PROTOCOL)[0]
            store = Path(tmp) / f"bench{dim}.h5"
            if not store.exists():
                make_store(store, dim)
            cmd = [sys.executable, __file__, "--one", model, "--store", str(store), "--device", args.device,
                   "--precision", args.precision, "--steps", str(steps), "--eval-fraction", str(fraction)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{model}: failed\n{done.stderr[-2000:]}")
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\nfeature store: 80 training videos x 10 crops x 2048-d (urdmu: 1024-d, 200 segments); {steps} measured "
        f"steps after 1 warm-up; "
        f"scoring: {rows[0]['eval_fraction'] if rows else fraction:.0%} of a UCF-sized test set, scaled up\n"
    )
    print(
        "| head | batch (bags x crops) | D | params | train step | data wait | peak memory | UCF-size scoring |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} x {r['crops']} | {r['dim']} | {r['params'] / 1e6:.2f} M | {r['step_s'] * 1000:.0f} ms | "
              f"{r['data_wait_share']:.1%} | {r['peak_mb']:.0f} MB | {r['eval_s']:.1f} s |")  # fmt: skip
    print(f"\nframe metrics on {UCF_TEST_FRAMES:,} frames: {frame_metrics_seconds():.2f} s")


if __name__ == "__main__":
    main()

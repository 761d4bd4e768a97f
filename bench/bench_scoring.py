"""Test scoring before/after length batching, side by side on a UCF-Crime-sized synthetic store.

The store: 290 test videos with UCF-Crime-like lengths (log-normal, 69,375 snippets ≈ 1.11 M frames in all),
10 crops × 2048-d, written once under a temporary folder (or ``--store``). Each head scores it through the real
loaders and ``predict_snippet_scores``, store reads included:

- *before*: the previous test loader — videos in annotation order, ``data.eval_batch_size`` per batch (FCN,
  DTED: 32; RTFM, GCN, HL-Net: 1) — and, for RTFM, its previous forward (channels-first ``Conv1d`` MTN, T × T
  non-local affinities, the scorer on MKL);
- *after*: ``length_batched_loader`` (length-sorted batches of ≤ ``data.eval_batch_rows`` padded rows) and the
  current heads (RTFM: its CPU scoring path, F(6, 3) Winograd on oneDNN).

Runs alternate (before, after, after, before, ...); the scores of both paths are compared video by video.
RTFM costs ≈ 50 MFLOP per snippet-crop, so on a CPU it scores every ``--rtfm-every``-th video only.

    python bench/bench_scoring.py [--heads fcn,rtfm] [--repeats 2] [--device cpu]
    python bench/bench_scoring.py --videos 12 --dim 32 --crops 2    # tiny (what the tests run)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vadmil.data.eval_batches import DEFAULT_MAX_ROWS, LengthBatches, length_batched_loader, padded_rows
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import VideoLabel
from vadmil.data.loaders import video_loader
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.evaluation.predict import predict_snippet_scores
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import full_mask, zero_padding
from vadmil.training.module import MILModule

UCF_TEST_VIDEOS, UCF_TEST_SNIPPETS = 290, 69_375
# the experiment configs' data.eval_batch_size before this change (conf/experiment/*.yaml, conf/train.yaml)
BEFORE_BATCH = {"fcn": 32, "dted": 32, "gcn": 1, "rtfm": 1}


def ucf_lengths(n_videos: int, total: int, seed: int = 0) -> np.ndarray:
    """Log-normal snippet counts scaled to ``total`` (UCF-Crime test: 290 videos, 20 to several thousand)."""
    lengths = np.random.default_rng(seed).lognormal(mean=0.0, sigma=0.8, size=n_videos)
    return np.maximum(1, np.round(lengths / lengths.sum() * total)).astype(int)


def make_store(path: Path, lengths: np.ndarray, crops: int, dim: int) -> dict[str, VideoLabel]:
    recipe = make_recipe(backbone="bench", feature_dim=dim, n_crops=crops, geometry=SnippetGeometry(16, 16, "drop"),
                         feature_dtype="float16")  # fmt: skip
    rng = np.random.default_rng(1)
    videos = {}
    with FeatureStore.create(path, recipe) as store:
        for i, t in enumerate(lengths):
            video_id = f"test{i:03d}"
            x = rng.standard_normal((int(t), crops, dim), dtype=np.float32)
            store.append(video_id, x, n_frames=int(t) * 16, fps=30)
            videos[video_id] = VideoLabel(video_id, i % 2)
    return videos


def plain_rtfm(module: MILModule) -> None:
    """Give an RTFM head its previous forward: channels-first Conv1d MTN, T × T non-local, MKL scorer."""
    head, mtn = module.head, module.head.mtn

    def mtn_forward(x, mask):
        residual = x.transpose(1, 2)
        branches = [
            post(conv(residual, mask)) for conv, post in zip(mtn.pyramid, mtn.pyramid_post, strict=True)
        ]
        branches.append(mtn.non_local(mtn.reduce(zero_padding(residual, mask)), mask))
        fused = mtn.fuse_post(mtn.fuse(torch.cat(branches, dim=1), mask))
        return (fused + residual).transpose(1, 2)

    def forward(features, mask=None):
        mask = full_mask(features, mask)
        embedded = head.dropout(mtn_forward(features, mask))
        logits = head.scorer(embedded).squeeze(-1)
        return HeadOutput(scores=torch.sigmoid(logits), logits=logits, magnitudes=embedded.norm(dim=-1),
                          features=embedded)  # fmt: skip

    head.forward = forward


def modules(head: str, dim: int, device: str) -> tuple[MILModule, MILModule]:
    """(before, after): the same weights; before runs the previous code path where there was one."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / "head" / f"{head}.yaml"
    torch.manual_seed(0)
    after = MILModule(instantiate(OmegaConf.load(conf), in_dim=dim)).to(device).eval()
    before = MILModule(instantiate(OmegaConf.load(conf), in_dim=dim)).to(device).eval()
    before.load_state_dict(after.state_dict())
    if head == "rtfm":
        plain_rtfm(before)
    return before, after


def bench_head(head, store, videos, ids, dim, device, repeats, max_rows) -> dict:
    before_module, after_module = modules(head, dim, device)
    runs = {
        "before": (
            before_module,
            lambda: video_loader(store, videos, ids, "none", BEFORE_BATCH.get(head, 32)),
        ),
        "after": (after_module, lambda: length_batched_loader(store, videos, ids, "none", max_rows)),
    }
    times, scores = {"before": [], "after": []}, {}
    for r in range(repeats):
        for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
            module, loader = runs[name]
            start = time.perf_counter()
            scores[name] = predict_snippet_scores(module, loader())
            times[name].append(time.perf_counter() - start)
            print(f"  {head} {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    diff = max(float(np.abs(scores["before"][v] - scores["after"][v]).max()) for v in ids)
    lengths = [store.n_snippets(v) for v in ids]
    bs = BEFORE_BATCH.get(head, 32)
    in_order = [list(range(i, min(i + bs, len(ids)))) for i in range(0, len(ids), bs)]
    return {
        "head": head, "videos": len(ids), "snippets": int(sum(lengths)),
        "rows_before": padded_rows(lengths, in_order, store.n_crops),
        "rows_after": padded_rows(lengths, list(LengthBatches(lengths, max_rows, store.n_crops)), store.n_crops),
        "before_s": float(np.median(times["before"])), "after_s": float(np.median(times["after"])),
        "times": times, "max_abs_diff": diff,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--heads", default="fcn,rtfm")
    parser.add_argument("--videos", type=int, default=UCF_TEST_VIDEOS)
    parser.add_argument(
        "--snippets", type=int, default=None, help="total snippets (default: UCF-Crime's share)"
    )
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path, alternating")
    parser.add_argument("--rtfm-every", type=int, default=None, help="RTFM scores every n-th video (CPU: 10)")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="data.eval_batch_rows")
    parser.add_argument("--store", type=Path, help="reuse (or write) the synthetic store here")
    args = parser.parse_args(argv)
    from vadmil.commands.base import flush_denormals

    flush_denormals()
    snippets = args.snippets or round(UCF_TEST_SNIPPETS * args.videos / UCF_TEST_VIDEOS)
    rtfm_every = args.rtfm_every or (1 if args.device.startswith("cuda") else 10)
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; {args.videos} videos, {snippets} snippets x "
          f"{args.crops} crops x {args.dim} (float16 store)")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "ucf_test.h5"
        lengths = ucf_lengths(args.videos, snippets)
        if path.exists():
            videos = {f"test{i:03d}": VideoLabel(f"test{i:03d}", i % 2) for i in range(args.videos)}
        else:
            start = time.perf_counter()
            videos = make_store(path, lengths, args.crops, args.dim)
            print(f"store written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        store = FeatureStore(path)
        for head in args.heads.split(","):
            ids = list(videos)[:: rtfm_every if head == "rtfm" else 1]
            results.append(
                bench_head(head, store, videos, ids, args.dim, args.device, args.repeats, args.max_rows)
            )
        store.close()
    print("| head | videos (snippets) | padded rows before → after | before s | after s | after / before | "
          "max abs score diff |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in results:
        print(f"| {r['head']} | {r['videos']} ({r['snippets']:,}) | {r['rows_before']:,} → {r['rows_after']:,} | "
              f"{r['before_s']:.2f} | {r['after_s']:.2f} | {r['after_s'] / r['before_s']:.2f} | "
              f"{r['max_abs_diff']:.1e} |")  # fmt: skip
    return results


if __name__ == "__main__":
    main()

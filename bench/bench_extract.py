"""Extraction throughput on a real video: decode-side work, backbone alone, the overlapped pipeline, and a naive
decode-everything-first baseline, all in one run (`make bench`).

CPU default: x3d_xs (random init), 1 centre crop of 160 px, 16-frame snippets. On a CUDA machine the same script
runs i3d_r50 with 10 crops in fp16 (`--gpu`), the figure users plan with.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vadmil.backbones.pytorchvideo import PyTorchVideoBackbone
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.extract.decode import BACKENDS, open_video
from vadmil.extract.pipeline import BackboneRunner, SnippetStream, run_extraction
from vadmil.extract.snippets import SnippetAssembler
from vadmil.extract.transforms import SnippetTransform

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "videos" / "vtest.avi"


def worker_side(video: Path, geometry, transform) -> tuple[int, float]:
    """Decode + cut snippets + transform, as a DataLoader worker does: (snippets, seconds)."""
    start, n = time.perf_counter(), 0
    decoded = open_video(video)
    assembler = SnippetAssembler(geometry, decoded.info.n_frames)
    for chunk in decoded.chunks():
        for snippet in assembler.feed(chunk):
            transform(snippet)
            n += 1
    for snippet in assembler.finish():
        transform(snippet)
        n += 1
    decoded.close()
    return n, time.perf_counter() - start


def decode_rates(video: Path) -> dict[str, float]:
    """Sequential decode-only frames/s of every installed backend (same file, same run)."""
    rates = {}
    for backend in BACKENDS:
        try:
            decoded = open_video(video, backend=backend)
        except VadmilError:  # e.g. opencv not installed
            continue
        start, n = time.perf_counter(), 0
        for chunk in decoded.chunks():
            n += len(chunk)
        decoded.close()
        rates[backend] = n / (time.perf_counter() - start)
    return rates


def backbone_side(runner, clips: torch.Tensor, n_snippets: int, batch: int) -> float:
    """Seconds for the backbone alone on n_snippets pre-made clips."""
    runner(clips[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, n_snippets, batch):
        runner(clips[: min(batch, n_snippets - i)])
    return time.perf_counter() - start


def naive(video: Path, geometry, transform, runner) -> tuple[int, float]:
    """Decode the whole video to memory first, then transform and run the backbone: (frames, seconds)."""
    start = time.perf_counter()
    decoded = open_video(video)
    frames = np.concatenate(list(decoded.chunks()))
    decoded.close()
    idx = np.arange(geometry.n_snippets(len(frames)))[:, None] * geometry.stride + np.arange(geometry.length)
    idx = np.minimum(idx, len(frames) - 1)
    for i in idx:
        runner(transform(frames[i])[None])
    return len(frames), time.perf_counter() - start


def measure(video: Path, arch: str, crops: str, size: int, short: int, precision: str, device: str,
            workers: int = 1, batch: int = 4) -> dict:  # fmt: skip
    """Snippets/s of each stage and pipeline variant on ``video`` (one run, side by side)."""
    torch.manual_seed(0)
    backbone = PyTorchVideoBackbone(arch, random_init=True)
    geometry = SnippetGeometry(16, 16, "pad_last")
    transform = SnippetTransform(
        short_side=short, crop_size=size, crops=crops, mean=backbone.mean, std=backbone.std
    )
    runner = BackboneRunner(backbone, device, precision)
    n_snippets, decode_s = worker_side(video, geometry, transform)
    clips = torch.randn(batch, len(transform(np.zeros((16, 64, 64, 3), np.uint8))), 3, 16, size, size)
    backbone_s = backbone_side(runner, clips, n_snippets, batch)
    pipelines = {}
    for n_workers, resize in ((workers, None), (0, "auto"), (workers, "auto")):
        with tempfile.TemporaryDirectory() as tmp:
            recipe = make_recipe(backbone=backbone.name, feature_dim=backbone.feature_dim, n_crops=clips.shape[1],
                                 geometry=geometry)  # fmt: skip
            with FeatureStore.create(Path(tmp) / "b.h5", recipe) as store:
                stream = SnippetStream(
                    [video], geometry, transform, batch_snippets=batch, decoder_resize=resize
                )
                result = run_extraction(store, stream, runner, num_workers=n_workers, progress=False)
        pipelines[f"pipeline, {n_workers} worker(s), {'decoder' if resize else 'torch'} resize"] = (
            result["snippets"] / result["seconds"]
        )
    frames, naive_s = naive(video, geometry, transform, runner)
    decode_rate, backbone_rate = n_snippets / decode_s, n_snippets / backbone_s
    best = max(pipelines, key=pipelines.get)
    return {
        "setting": f"{backbone.name}, {crops} crop(s) of {size}, {precision}, {device}, {n_snippets} snippets of "
        f"{video.name}",
        "stages": {
            "decode + snippets + transform (worker side, torch resize)": decode_rate,
            "backbone alone": backbone_rate,
            **pipelines,
            "naive: decode all frames first, then extract": frames / naive_s / 16,
        },
        "best": best,
        "pipeline_over_bottleneck": pipelines[best] / min(decode_rate, backbone_rate),
        "pipeline_over_backbone": pipelines[best] / backbone_rate,
    }


def report(result: dict) -> str:
    """Markdown table of :func:`measure`'s result."""
    lines = [result["setting"], "", "| stage | snippets/s | frames/s |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.2f} | {rate * 16:.0f} |" for name, rate in result["stages"].items()]
    lines += ["", f"ratio pipeline / min(decode, backbone) = {result['pipeline_over_bottleneck']:.2f} "
              f"({result['best']})", f"ratio pipeline / backbone alone = {result['pipeline_over_backbone']:.2f}"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpu", action="store_true", help="i3d_r50, 10 crops, fp16 on CUDA")
    parser.add_argument("--precision", choices=["fp16", "bf16"], default="fp16", help="with --gpu")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if not VIDEO.exists():
        raise SystemExit(f"{VIDEO} is missing: the benchmark needs the shared test video")
    # (arch, crops, crop size, short side, precision, device)
    setting = (
        ("i3d_r50", "ten", 224, 256, args.precision, "cuda")
        if args.gpu
        else ("x3d_xs", "center", 160, 160, "fp32", "cpu")
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(report(measure(VIDEO, *setting, workers=args.workers)))
    print("\n| decoder backend | decode-only frames/s |\n|---|---|")
    for backend, rate in decode_rates(VIDEO).items():
        print(f"| {backend} | {rate:.0f} |")


if __name__ == "__main__":
    main()

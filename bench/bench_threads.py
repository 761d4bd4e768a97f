"""Torch threads for extraction, side by side (`threads=1` vs `threads=2` vs `auto`), plus decode-only rates.

Runs whole `vadmil extract` jobs (the library call behind the command) on vtest.avi — x3d_xs random init, one
160 px centre crop, 16-frame snippets, the default 2 decoding workers — alternating the settings round by round so
that load changes hit every setting alike; then decodes the file with every installed backend (probe included)
and times the probe (demux pass) alone. Run it alone:

    .venv/bin/python bench/bench_threads.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError
from vadmil.extract.decode import BACKENDS, open_video
from vadmil.extract.jobs import extract
from vadmil.extract.probe import probe_stream

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "videos" / "vtest.avi"
BASE = ["backbone=x3d_xs", "backbone.random_init=true", "crop_size=160", "short_side=160", "progress=false"]


def one_extraction(video: Path, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("extract", [*BASE, f"input={video}", f"output={Path(tmp) / 's.h5'}", *overrides])
        start = time.perf_counter()
        result = extract(cfg)
        seconds = time.perf_counter() - start
    assert result["extracted"] == 1, result
    return seconds


def decode_rates(video: Path) -> dict[str, float]:
    rates = {}
    for backend in BACKENDS:
        try:
            start = time.perf_counter()
            with open_video(video, backend=backend) as decoded:
                n = sum(len(chunk) for chunk in decoded.chunks())
        except VadmilError:  # e.g. opencv not installed
            continue
        rates[backend] = n / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--video", type=Path, default=VIDEO)
    args = parser.parse_args()
    settings = {
        "threads=1": ["threads=1"],
        "threads=2": ["threads=2"],
        "threads=1 decoder.resize=auto": ["threads=1", "decoder.resize=auto"],
        "threads=2 decoder.resize=auto": ["threads=2", "decoder.resize=auto"],
    }
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.2f}; {args.video.name}")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(args.rounds):
        order = list(settings) if r % 2 == 0 else list(reversed(settings))  # alternate who goes first
        for name in order:
            times[name].append(one_extraction(args.video, settings[name]))
            print(f"  round {r}: {name:32s} {times[name][-1]:6.1f} s", flush=True)
    ref = statistics.median(times["threads=2"])
    print("\n| setting | wall s (median) | vs threads=2 |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} ({', '.join(f'{t:.1f}' for t in ts)}) | "
              f"{statistics.median(ts) / ref:.2f} |")  # fmt: skip
    start = time.perf_counter()
    probe = probe_stream(str(args.video))
    print(f"\nprobe (demux pass): {probe.n_frames} frames in {1000 * (time.perf_counter() - start):.0f} ms")
    for backend, rate in decode_rates(args.video).items():
        print(f"decode-only {backend}: {rate:,.0f} frames/s (probe included)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

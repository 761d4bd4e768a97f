"""Every GPU figure of docs/benchmarks.md with one command: extraction, the heads' training and scoring, RTFM
against its official code, and test scoring before/after length batching.

    python bench/bench_gpu.py                      # on a CUDA machine (`make bench-gpu`); prints Markdown
    python bench/bench_gpu.py --device cpu --tiny  # the same code paths at tiny sizes on a CPU (the tests run it)

1. Extraction (``bench_extract.measure``): i3d_r50 (random init), 10 crops of 224 px, 16-frame snippets of the
   shared test video, fp16 and then bf16 autocast; decoding in a DataLoader worker overlapped with the backbone.
   Target: the pipeline at ≥ 0.9 × the backbone-alone rate.
2. The heads (``bench_heads.py``, one process per head): training step at each paper batch, data wait, peak
   memory, UCF-Crime-sized scoring; fp32 and bf16.
3. RTFM's step against the official code's, side by side (``bench_rtfm.py``).
4. Test scoring before/after length batching on a UCF-sized store (``bench_scoring.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_extract  # noqa: E402
import bench_rtfm  # noqa: E402
import bench_scoring  # noqa: E402


def extraction(device: str, tiny: bool, video: Path) -> list[dict]:
    if tiny:  # x3d_xs at 32 px: the same pipeline code; fp16/bf16 autocast needs CUDA
        return [bench_extract.measure(video, "x3d_xs", "center", 32, 32, "fp32", device, workers=1, batch=2)]
    return [
        bench_extract.measure(video, "i3d_r50", "ten", 224, 256, p, device, workers=2)
        for p in ("fp16", "bf16")
    ]


def heads(device: str, tiny: bool) -> str:
    """bench_heads.py's tables (fp32, then bf16 on a GPU), as printed."""
    out = []
    for precision in ("fp32",) if tiny else ("fp32", "bf16"):
        cmd = [sys.executable, str(HERE / "bench_heads.py"), "--device", device, "--precision", precision]
        if tiny:
            cmd += ["--dim", "32", "--models", "fcn", "--steps", "1", "--eval-fraction", "0.01"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(done.stdout)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU path the tests run)")
    parser.add_argument("--video", type=Path, default=bench_extract.VIDEO)
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: extract,heads,rtfm,scoring"
    )
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if not args.tiny and not args.device.startswith("cuda"):
        raise SystemExit("bench_gpu: no CUDA device; run it on a GPU machine, or pass --device cpu --tiny")
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {args.device} ({gpu}){', tiny sizes' if args.tiny else ''}\n")  # fmt: skip
    results: dict = {}
    if "extract" not in skip:
        if not args.video.exists():
            raise SystemExit(f"bench_gpu: {args.video} is missing; pass --video <a video file>")
        results["extract"] = extraction(args.device, args.tiny, args.video)
        for r in results["extract"]:
            print("## Extraction\n\n" + bench_extract.report(r) + " (target >= 0.9)\n")
    if "heads" not in skip:
        results["heads"] = heads(args.device, args.tiny)
        print("## Heads: training step and UCF-size scoring\n\n" + results["heads"])
    if "rtfm" not in skip:
        print("## RTFM step: vadmil vs the official code\n")
        tiny = ["--bags", "4", "--dim", "32", "--repeats", "2"] if args.tiny else ["--repeats", "10"]
        results["rtfm"] = bench_rtfm.main(["--device", args.device, *tiny])
    if "scoring" not in skip:
        print("\n## Test scoring before/after length batching\n")
        with tempfile.TemporaryDirectory() as tmp:
            tiny = ["--videos", "12", "--dim", "32", "--crops", "2", "--repeats", "1"] if args.tiny else []
            results["scoring"] = bench_scoring.main(
                ["--device", args.device, "--store", str(Path(tmp) / "ucf.h5"), "--heads", "fcn,rtfm", *tiny]
            )
    return results


if __name__ == "__main__":
    main()

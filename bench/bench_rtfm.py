"""RTFM training step: vadmil vs the official code, side by side; and where the time of the RTFM, GCN and DTED
steps goes.

Both steps run in one process on the same random batch (B/2 normal + B/2 abnormal bags × crops × segments × D,
the code's batch: 32 + 32 × 10 × 32 × 2048), with the same weights and Adam (lr 1e-3, weight decay 0.005):
the official network and loss (``rtfm_reference.py``) against vadmil's ``MILModule`` + ``RTFMHead`` + the
``rtfm`` objective. Repetitions are interleaved (ABBA order) so that load changes hit both alike; the ratio is
the median vadmil step over the median official step.

    python bench/bench_rtfm.py                    # side by side at the paper batch
    python bench/bench_rtfm.py --profile rtfm,gcn,dted    # + torch.profiler tables of those steps
    python bench/bench_rtfm.py --bags 4 --repeats 2 --dim 64 --device cpu    # tiny (what the tests run)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rtfm_reference import OfficialRTFM, copy_from_vadmil, official_loss  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def vadmil_module(model: str, dim: int, device: str):
    """MILModule with ``conf/model/<model>.yaml``'s head, objective and optimiser."""
    from vadmil.training.module import MILModule

    parts = {p: OmegaConf.load(CONF / p / f"{OmegaConf.load(CONF / f'{model}.yaml').defaults[i][p]}.yaml")
             for i, p in enumerate(("head", "objective", "optimizer"))}  # fmt: skip
    module = MILModule(instantiate(parts["head"], in_dim=dim), instantiate(parts["objective"])).to(device)
    return module, instantiate(parts["optimizer"])(module.parameters())


def make_batch(bags: int, crops: int, segments: int, dim: int, device: str) -> dict:
    """Normal bags first, then abnormal (the code's order)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(bags, crops, segments, dim, generator=generator).to(device),
        "mask": torch.ones(bags, segments, dtype=torch.bool, device=device),
        "label": torch.tensor([0.0] * (bags // 2) + [1.0] * (bags // 2), device=device),
    }


def steps(bags: int, crops: int, segments: int, dim: int, device: str, plain: bool = False) -> dict:
    """name → zero-argument training step (forward, loss, backward, Adam) of vadmil's RTFM and the code's; with
    ``plain``, also vadmil's RTFM with its previous channels-first Conv1d MTN (same weights), as "vadmil, plain"."""
    torch.manual_seed(0)
    batch = make_batch(bags, crops, segments, dim, device)
    module, optimizer = vadmil_module("rtfm", dim, device)
    state = module.state_dict()
    reference = OfficialRTFM(dim, bags // 2, segments).to(device)
    copy_from_vadmil(reference, module.head)
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3, weight_decay=0.005)
    module.train(), reference.train()

    def ours():
        loss, _ = module.objective(module(batch["x"], batch["mask"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def official():
        loss = official_loss(reference, batch["x"], bags // 2)
        ref_optimizer.zero_grad()
        loss.backward()
        ref_optimizer.step()

    fns = {"vadmil": ours, "official": official}
    if plain:
        from bench_scoring import plain_rtfm

        before, before_optimizer = vadmil_module("rtfm", dim, device)
        before.load_state_dict(state)
        plain_rtfm(before)
        before.train()

        def previous():
            loss, _ = before.objective(before(batch["x"], batch["mask"]), batch)
            before_optimizer.zero_grad()
            loss.backward()
            before_optimizer.step()

        fns["vadmil, plain"] = previous
    return fns


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def side_by_side(fns: dict, repeats: int, device: str, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per step of each function, interleaved ABBA after ``warmup`` steps of each."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.3f} s", file=sys.stderr, flush=True)
    return times


def profile_step(
    model: str, bags: int, crops: int, segments: int, dim: int, device: str, rows: int = 12
) -> str:
    """torch.profiler table (self time per op, top ``rows``) of one step of ``model`` after a warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    module, optimizer = vadmil_module(model, dim, device)
    batch = make_batch(bags, crops, segments, dim, device)
    module.train()

    def step():
        loss, _ = module.objective(module(batch["x"], batch["mask"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bags", type=int, default=64, help="bags per batch, half normal (code: 32 + 32)")
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--segments", type=int, default=32)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument(
        "--repeats", type=int, default=4, help="measured steps of each, interleaved (0: none)"
    )
    parser.add_argument("--profile", default="", help="also profile these models' steps, e.g. rtfm,gcn,dted")
    parser.add_argument(
        "--plain", action="store_true", help="also time the previous (Conv1d) MTN, interleaved"
    )
    args = parser.parse_args(argv)
    from vadmil.commands.base import flush_denormals

    flush_denormals()  # as every vadmil command does; the reference runs under the same setting
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; batch {args.bags // 2} + {args.bags // 2} bags "
          f"x {args.crops} crops x {args.segments} x {args.dim}")  # fmt: skip
    result = {}
    if args.repeats > 0:  # 0: profiles only
        result = compare(args)
    if args.profile:
        for model in args.profile.split(","):
            print(f"\n### {model} step profile\n")
            bags = (
                args.bags if model == "rtfm" else 2 * max(1, round(args.bags * 30 / 64))
            )  # GCN, DTED: 30 + 30
            print(profile_step(model, bags, args.crops, args.segments, args.dim, args.device))
    return result


def compare(args) -> dict:
    """The side-by-side table and ratio(s)."""
    fns = steps(args.bags, args.crops, args.segments, args.dim, args.device, args.plain)
    times = side_by_side(fns, args.repeats, args.device)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    ratio = medians["vadmil"] / medians["official"]
    print("| step | median s | all s |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {medians[name]:.3f} | {', '.join(f'{s:.3f}' for s in t)} |")
    print(f"vadmil / official = {ratio:.3f}")
    if args.plain:
        print(f"vadmil, plain / official = {medians['vadmil, plain'] / medians['official']:.3f}")
    return {"medians": medians, "ratio": ratio}


if __name__ == "__main__":
    main()

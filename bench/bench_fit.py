"""Fit time with the Sultani settings on a UCF-Crime-sized store: validation every epoch (before) vs the step
cadence with in-memory validation batches (after), side by side in one run, plus the step-only time.

The store: 200 training + 20 test synthetic videos, 10 crops x 2048-d, 24-300 snippets (UCF-Crime-like lengths),
written under /tmp on first use (≈ 2.8 GB; never commit it). Every run uses experiment=sultani_ucf_crime's data
and model settings on a manifest data set, with the oracle off (it is not part of the fit time anyway).

    .venv/bin/python bench/bench_fit.py --steps 98 --before-steps 30

The step-only time is each fit's ``train_seconds`` (its optimiser steps, data included). A 1,500-step fit takes
15+ min of steps alone on 2 cores, so each run trains fewer steps and the table also extrapolates to 1,500
steps from the measured parts: the run's other costs (setup, checkpoints) + 1,500 x its mean step + the number of
validations a 1,500-step fit runs x its per-validation time (first and later apart: a cached run reads in its
first). Paste the output into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from vadmil.commands.base import config_dir
from vadmil.data.synthetic import ensure_synthetic
from vadmil.training.timing import FitTimer
from vadmil.training.train import train

STORE = dict(seed=0, n_train_normal=100, n_train_abnormal=100, n_test_normal=10, n_test_abnormal=10,
             feature_dim=2048, n_crops=10, min_snippets=24, max_snippets=300)  # fmt: skip
TARGET_STEPS = 1500
ON_VALIDATION_END = FitTimer.on_validation_end


def fit(store: str, manifest: str, steps: int, overrides: list[str]) -> dict:
    """metrics.json of one Sultani-setting run of ``steps`` steps on the store."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", [
            "experiment=sultani_ucf_crime", "dataset=manifest", "dataset.name=ucf_like", f"dataset.store={store}",
            f"dataset.annotations.path={manifest}", f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false",
            "oracle.every=0", *overrides,
        ])  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as run_dir:
        return train(cfg, run_dir)


def validations_in(steps: int, schedule: str, epoch_batches: int) -> int:
    """How many validations a ``steps``-step fit runs under ``schedule`` (metrics.json's validation_schedule)."""
    if schedule.startswith("every epoch"):
        return steps // epoch_batches  # Lightning validates after complete epochs only
    return math.ceil(steps / int(schedule.split()[1]))  # and at max_steps


def record_validations() -> list[float]:
    """Seconds of every validation from now on (FitTimer adds them up; the bench wants each)."""
    each, end = [], FitTimer.on_validation_end

    def on_validation_end(self, trainer, pl_module):
        before = self.validation_seconds
        end(self, trainer, pl_module)
        each.append(self.validation_seconds - before)

    FitTimer.on_validation_end = on_validation_end
    return each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/fit_bench", help="where the store is (written on first use)")
    parser.add_argument("--steps", type=int, default=98, help="steps of the after run")
    parser.add_argument("--before-steps", type=int, default=30, help="steps of the 'before' run")
    args = parser.parse_args()
    store, manifest = f"{args.dir}/ucf_like.h5", f"{args.dir}/ucf_like.manifest.json"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    ensure_synthetic(store, manifest, **STORE)
    epoch_batches = math.ceil(80 / 30)  # 160 training videos after the split: 80 per class, 30 per batch
    runs = {
        "before: every epoch, read every time": (args.before_steps, ["trainer.val_check_interval=epoch",
                                                                    "data.val_cache_mb=0"]),
        "after: defaults (auto cadence, cached)": (args.steps, []),
    }  # fmt: skip
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads)")  # fmt: skip
    print(f"store: {store}: 200 train (40 validation) + 20 test videos, 10 x 2048-d, 24-300 snippets\n")
    print("| run | steps | validations | fit s | step-only (train) s | validation s | other s | fit / step-only "
          "| validation share | s/step | s/validation: first, later | at 1,500 steps: validations, fit, "
          "fit / step-only, validation share |")  # fmt: skip
    print("|---" * 12 + "|")
    for name, (steps, overrides) in runs.items():
        each = record_validations()
        m = fit(store, manifest, steps, overrides)
        FitTimer.on_validation_end = ON_VALIDATION_END
        fit_s, train_s, val_s = m["fit_seconds"], m["train_seconds"], m["validation_seconds"]
        other, per_step = fit_s - train_s - val_s, train_s / steps
        later = statistics.fmean(each[1:]) if len(each) > 1 else each[0]
        # Extrapolated from this run's parts: its setup and other costs, its mean step, its first validation
        # (the cached run reads then) and the mean of its later ones.
        n = validations_in(TARGET_STEPS, m["validation_schedule"], epoch_batches)
        val_n, train_n = each[0] + (n - 1) * later, TARGET_STEPS * per_step
        fit_n = other + train_n + val_n
        print(f"| {name} ({m['validation_schedule']}) | {steps} | {m['n_validations']} | {fit_s:.1f} | {train_s:.1f} "
              f"| {val_s:.1f} | {other:.1f} | {fit_s / train_s:.2f} | {val_s / fit_s:.1%} | {per_step:.3f} "
              f"| {each[0]:.2f}, {later:.2f} | {n}, {fit_n / 60:.1f} min, {fit_n / train_n:.2f}, "
              f"{val_n / fit_n:.1%} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

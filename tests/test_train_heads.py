"""End to end through the real `vadmil train -m`: every head learns planted anomalies, and every experiment
config (the papers' hyper-parameters) runs on the synthetic data set. Models and experiments are discovered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_OVERRIDES, run_vadmil
from vadmil.commands.catalog import experiment_methods, group_configs, sweep_heads

MODELS = sweep_heads()
# One file per method; its <method>_<dataset> shorthands compose to the same settings (tests/test_catalog.py).
EXPERIMENTS = experiment_methods()
# A small planted data set: 30 + 30 training videos, 32-d features, 2 crops; additive events only (the data the
# threshold below was measured on; the norm-keeping and norm-lowering types are reported per category instead).
SMALL = dict(n_train_normal=30, n_train_abnormal=30, n_test_normal=15, n_test_abnormal=15, feature_dim=32,
             n_crops=2, min_snippets=12, max_snippets=60, anomaly_strength=4.0, anomaly_types="[additive]")  # fmt: skip
# Chance is 0.5; every head reaches >= 0.6 with 200 steps of 8 + 8 bags (two seeds measured, see docs/heads.md),
# MGFN at seed 0 (0.629; 0.586 / 0.635 at seeds 1 / 2: docs/heads.md, MGFN).
LEARNED_AUC = 0.6
# MGFN at the code's widths (28.7 M parameters, 27 M in its last stage) would take most of this file's CPU budget:
# it learns here at the demo's widths (conf/sweep_head/demo_mgfn.yaml), as measured for the threshold above.
DEMO_WIDTHS = {"mgfn"}


def _runs(root: Path) -> dict[str, dict]:
    """Multirun job dirs → their metrics.json (or the error they left)."""
    out = {}
    for job in sorted(p for p in root.glob("multirun/*/*") if p.is_dir()):
        metrics, error = job / "metrics.json", job / "error.txt"
        out[job.name] = json.loads(metrics.read_text()) if metrics.exists() else {"error": error.read_text()}
    return out


@pytest.fixture(scope="module")
def head_runs(tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("heads")
    common = ["seed=0", *[f"dataset.prepare.{k}={v}" for k, v in SMALL.items()], "trainer.max_steps=200",
              "data.batch_size=16", "data.batches_per_epoch=20", "trainer.enable_progress_bar=false"]  # fmt: skip
    for models, extra in (
        ([m for m in MODELS if m not in DEMO_WIDTHS], []),
        (sorted(DEMO_WIDTHS), ["sweep_head=demo_${model}"]),
    ):
        result = run_vadmil(
            "train", "-m", f"model={','.join(models)}", *common, *extra, cwd=work, timeout=1800
        )
        assert result.returncode == 0, result.stderr[-3000:]
    runs = {m["head"]: m for m in _runs(work / "runs").values() if "head" in m}
    assert set(runs) == set(MODELS), _runs(work / "runs")
    return runs


@pytest.mark.parametrize("model", MODELS)
def test_every_head_learns_the_planted_anomalies(head_runs, model):
    metrics = head_runs[model]
    assert metrics["status"] == "complete"
    assert metrics["test"]["frame_auc"] >= LEARNED_AUC, metrics["test"]
    if metrics["supervision"] == "none":  # unsupervised: selected on normal videos only, no video AUC
        assert metrics["validation"]["video_auc"] is None and metrics["validation"]["normal_error"] >= 0
    else:
        assert metrics["validation"]["video_auc"] > 0.5


def test_every_experiment_config_runs_end_to_end(tmp_path):
    """Each paper configuration, pointed at the tiny synthetic data set, trains, validates and tests."""
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("trainer.max_steps", "data.batch_size"))]
    result = run_vadmil(
        "train", "-m", f"experiment={','.join(EXPERIMENTS)}", "dataset=synthetic", *overrides,
        "trainer.max_steps=3", cwd=tmp_path, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(tmp_path / "runs")
    assert len(runs) == len(EXPERIMENTS)
    failed = {name: m["error"] for name, m in runs.items() if "error" in m}
    assert not failed, failed
    experiments = group_configs("experiment")
    heads = {
        d["override /model"]
        for e in EXPERIMENTS
        for d in experiments[e]["defaults"]
        if "override /model" in d
    }
    assert {m["head"] for m in runs.values()} == heads

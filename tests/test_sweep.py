"""Sweeps: the named sweep configs compose; real multiruns (joblib, submitit_local, Optuna) then `vadmil report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import TINY_OVERRIDES, TINY_SPEC, run_vadmil
from vadmil.commands.base import config_dir
from vadmil.data.synthetic import ensure_synthetic
from vadmil.report import write_report

CONF = Path(config_dir())
HEADS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# Two heads for the real sweeps: the FCN baseline and a second one (an FCN variant if no other head exists).
SECOND = ["model=gcn"] if "gcn" in HEADS else ["model=fcn", "model.head.dropout=0.3"]
TWO_HEADS = "model=fcn,gcn" if "gcn" in HEADS else "model.head.dropout=0.6,0.3"


def sweep_options() -> list[str]:
    return sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))


@pytest.mark.parametrize("sweep", sweep_options())
def test_sweep_configs_compose_and_name_existing_heads(sweep):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"sweep={sweep}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params, f"conf/sweep/{sweep}.yaml sweeps nothing"
    if "model" in params:  # every head a leaderboard sweep names has a config
        assert set(params.model.split(",")) <= set(HEADS), params.model
    if sweep.startswith("optuna"):
        assert cfg.hydra.sweeper.direction == "maximize"  # the validation AUC that `vadmil train` returns
        assert not any("test" in key for key in params)
    if sweep.startswith("leaderboard_"):
        assert cfg.dataset.name == sweep.removeprefix("leaderboard_")


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "submitit_local"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


def _sweep_dir(work: Path, name: str) -> Path:
    """The sweep dir, after creating the tiny data set where the jobs look for it (parallel jobs would race
    to generate it; `make demo` runs `vadmil synthesize` first for the same reason)."""
    features = work / "features"
    ensure_synthetic(
        str(features / "synthetic_s0.h5"), str(features / "synthetic_s0.manifest.json"), seed=0, **TINY_SPEC
    )
    return work / "runs" / name


def _check_sweep_and_report(work: Path, sweep: Path, n_complete: int, n_failed: int = 0) -> dict:
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    complete = [p for p in run_dirs if (p / "metrics.json").is_file()]
    failed = [p for p in run_dirs if (p / "error.txt").is_file()]
    assert (len(complete), len(failed)) == (n_complete, n_failed), [p.name for p in run_dirs]
    report = run_vadmil("report", f"runs={sweep}", f"output={work / 'report'}", cwd=work)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (work / "report" / "leaderboard.html").read_text()
    assert "<svg" in page and "http://" not in page and "https://" not in page
    return {"report": report, "md": (work / "report" / "leaderboard.md").read_text()}


def test_joblib_sweep_of_two_heads_and_two_seeds_then_report(tmp_path):
    sweep = _sweep_dir(tmp_path, "joblib")
    # A bad value for half the jobs: those fail (error.txt), the sweep goes on and exits 0.
    result = run_vadmil(
        "train", "-m", *TINY_OVERRIDES, TWO_HEADS, "seed=0,1", "data.val_fraction=0.25,1.5",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = _check_sweep_and_report(tmp_path, sweep, n_complete=4, n_failed=4)
    for bad in sweep.glob("*/error.txt"):
        assert "val_fraction" in bad.read_text()
    assert "## Runs that did not finish" in out["md"] and out["md"].count("| failed |") == 4
    # the leaderboard, not the per-category table below it
    ranking = out["md"].split("### Frame AUC by anomaly category")[0]
    rows = [line for line in ranking.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and all("| 2 |" in row for row in rows)  # two heads ranked, two seeds each


@pytest.mark.slow  # the joblib sweep above covers sweep -> report in `make test`
def test_submitit_local_sweep_then_report(tmp_path, monkeypatch):
    # submitit_local starts every job at once: one thread each keeps 4 jobs on 2 cores from thrashing.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep = _sweep_dir(tmp_path, "submitit")
    result = run_vadmil(
        "train", "-m", *TINY_OVERRIDES, TWO_HEADS, "seed=0,1", "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = _check_sweep_and_report(tmp_path, sweep, n_complete=4)
    assert (sweep / ".submitit").is_dir()
    assert "did not finish" not in out["report"].stdout


def test_optuna_search_maximises_the_validation_auc(tmp_path):
    sweep = _sweep_dir(tmp_path, "optuna")
    result = run_vadmil(
        "train", "-m", "sweep=optuna_fcn", *TINY_OVERRIDES, "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = sorted(sweep.glob("*/metrics.json"))
    assert len(trials) == 3
    val = [json.loads(p.read_text())["validation"]["video_auc"] for p in trials]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(val))
    assert set(best["best_params"]) == {
        "model.optimizer.lr", "model.head.dropout", "model.optimizer.weight_decay",
        "model.objective.terms.sparsity.weight",
    }  # fmt: skip
    (section,) = write_report([sweep], tmp_path / "report")["sections"]
    assert (
        len(section.groups) == 3 and section.show_variant
    )  # each trial its own row, labelled by its settings
    assert all("model.optimizer.lr=" in g.variant for g in section.groups)

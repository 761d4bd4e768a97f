"""Validation cadence in steps, early stopping, and the time keys of metrics.json."""

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import TINY_OVERRIDES
from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError
from vadmil.training.schedule import AUTO_FACTOR, UNCACHED_FACTOR, auto_interval, validation_schedule
from vadmil.training.train import train

SELECTION = ("test", "validation", "selected_epoch", "selected_step")


def fit(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, list[int]]:
    """(metrics.json, the steps at which validation ran) of a tiny in-process training run."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", [*TINY_OVERRIDES, f"paths.features={tmp_path / 'features'}", *overrides])
    run_dir = tmp_path / name
    run_dir.mkdir()
    metrics = train(cfg, run_dir)
    with open(run_dir / "logs" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("val/video_auc")]
    return metrics, steps


def test_validation_runs_every_n_steps_and_at_the_last_step(tmp_path):
    metrics, steps = fit(tmp_path, "n10", "trainer.val_check_interval=10")
    # Lightning logs a validation at the step count before its increment: 9 is after the 10th step.
    assert steps == [9, 19, 23] and metrics["n_validations"] == 3
    assert metrics["validation_schedule"] == "every 10 steps" and metrics["selected_step"] in (10, 20, 24)


def test_step_cadence_selects_exactly_as_the_same_epoch_schedule(tmp_path):
    """An epoch of 3 batches validated every epoch and a cadence of 3 steps run the same schedule: same
    validations, same selected checkpoint, same test metrics."""
    epoch, epoch_steps = fit(
        tmp_path, "epoch", "data.batches_per_epoch=3", "trainer.val_check_interval=epoch"
    )
    steps, step_steps = fit(tmp_path, "steps", "data.batches_per_epoch=3", "trainer.val_check_interval=3")
    assert epoch_steps == step_steps == list(range(2, 24, 3))
    assert {k: epoch[k] for k in SELECTION} == {k: steps[k] for k in SELECTION}
    assert epoch["validation_schedule"] == "every epoch"


def test_time_accounting(tmp_path):
    metrics, _ = fit(tmp_path, "times", "trainer.val_check_interval=6")
    fit_s, train_s, val_s = metrics["fit_seconds"], metrics["train_seconds"], metrics["validation_seconds"]
    assert train_s > 0 and val_s > 0 and train_s + val_s <= fit_s + 1e-3
    assert metrics["n_validations"] == 4


def test_early_stopping_counts_validations_without_a_better_auc(tmp_path):
    # lr 0: the weights never move, so every validation repeats the first AUC (never better)
    metrics, steps = fit(
        tmp_path, "early", "trainer.val_check_interval=2", "trainer.early_stopping_patience=2",
        "model.optimizer.lr=0", "trainer.max_steps=40",
    )  # fmt: skip
    assert steps == [1, 3, 5] and metrics["n_validations"] == 3
    assert metrics["selected_step"] == 6  # ties go to the later checkpoint
    assert "stopping after 2 validations" in metrics["validation_schedule"]


def fake_dm(val_rows: int, cached: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        val_size=lambda: (val_rows, val_rows * 4), val_cached=lambda: cached,
        batch_size=60, n_crops=10, crops="stack", n_segments=32,
    )  # fmt: skip


def test_auto_interval_grows_with_the_validation_split_and_when_reading():
    step_rows = 60 * 10 * 32
    assert auto_interval(fake_dm(step_rows), 10_000) == AUTO_FACTOR
    assert auto_interval(fake_dm(10 * step_rows), 10_000) == 10 * AUTO_FACTOR
    assert auto_interval(fake_dm(step_rows, cached=False), 10_000) == AUTO_FACTOR * UNCACHED_FACTOR
    assert auto_interval(fake_dm(10 * step_rows), 20) == 20  # at least the validation at the end
    assert auto_interval(fake_dm(1), 20) == 1
    kwargs, callbacks, described = validation_schedule(
        {"max_steps": 100, "val_check_interval": "auto"}, fake_dm(1)
    )
    assert kwargs == {"max_steps": 100, "val_check_interval": 1, "check_val_every_n_epoch": None}
    assert described == "every 1 steps" and len(callbacks) == 1


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("val_check_interval", 0, "give a number of training steps"),
        ("val_check_interval", "often", "auto .* or epoch"),
        ("val_check_interval", 0.5, "give a number of training steps"),
        ("early_stopping_patience", 0, "number of validations"),
    ],
)
def test_bad_schedule_settings_fail_clearly(key, value, match):
    with pytest.raises(VadmilError, match=match):
        validation_schedule({"max_steps": 10, key: value}, fake_dm(10))


def test_auto_needs_max_steps():
    with pytest.raises(VadmilError, match="max_steps > 0"):
        validation_schedule({"max_steps": -1, "val_check_interval": "auto"}, fake_dm(10))


def test_cached_validation_selects_and_scores_as_reading_every_time(tmp_path):
    """The validation cache changes nothing but time: same validation AUCs, checkpoint and test metrics."""
    runs = {}
    for name, budget in (("cached", 2048), ("read", 0)):
        metrics, steps = fit(tmp_path, name, "trainer.val_check_interval=4", f"data.val_cache_mb={budget}")
        with open(tmp_path / name / "logs" / "metrics.csv") as f:
            aucs = [row["val/video_auc"] for row in csv.DictReader(f) if row.get("val/video_auc")]
        runs[name] = ({k: metrics[k] for k in SELECTION}, steps, aucs)
    assert runs["cached"] == runs["read"] and len(runs["read"][1]) == 6


def test_early_stopping_of_a_normal_only_head_watches_its_validation_error(tmp_path):
    metrics, _ = fit(
        tmp_path, "ae", "model=feature_ae", "trainer.val_check_interval=2", "trainer.early_stopping_patience=1",
        "model.optimizer.lr=0", "trainer.max_steps=40",
    )  # fmt: skip
    assert (
        metrics["n_validations"] == 2
        and "without a better val/normal_error" in metrics["validation_schedule"]
    )

"""Integration: the real `vadmil` command in a subprocess — train → eval on a tiny store, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import TINY_OVERRIDES, run_vadmil
from tests.inprocess import run_inprocess
from vadmil.cli import COMMANDS
from vadmil.commands.base import config_dir

# Every model config, discovered: the help lists them all, in order.
MODELS = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))

METRIC_KEYS = {"frame_auc", "frame_ap_step", "frame_ap_trapz", "frame_auc_abnormal", "far"}


def assert_user_error(result, *fragments: str) -> None:
    """Exit status 2 and a single `vadmil: error:` line naming the problem."""
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("vadmil: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path, object]:
    """One real training run on the tiny synthetic data set: (work dir, run dir, process result)."""
    work = tmp_path_factory.mktemp("train")
    result = run_vadmil("train", *TINY_OVERRIDES, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (work / "runs" / "synthetic" / "fcn").iterdir()
    return work, run_dir, result


def test_train_writes_a_complete_run_dir(trained_run):
    work, run_dir, result = trained_run
    assert "test frame AUC" in result.stdout and f"run dir: {run_dir}" in result.stdout
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "predictions.npz").is_file() and not (run_dir / "error.txt").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["head"] == "fcn" and metrics["dataset"] == "synthetic"
    assert METRIC_KEYS <= set(metrics["test"]) and all(0 <= metrics["test"][k] <= 1 for k in METRIC_KEYS)
    assert 0 <= metrics["validation"]["video_auc"] <= 1
    assert metrics["n_videos"] == {"train": 16, "val": 4, "test": 10}
    assert metrics["selected_step"] <= 24 and metrics["fit_seconds"] > 0
    assert metrics["n_parameters"] == 16 * 512 + 512 + 512 * 32 + 32 + 32 + 1
    assert metrics["features"]["backbone"] == "synthetic" and metrics["features"]["feature_dim"] == 16
    config = OmegaConf.load(run_dir / "config.yaml")  # resolved, with absolute paths
    assert Path(config.dataset.store).is_absolute() and Path(config.dataset.store).is_file()
    assert config.model.head._target_ == "vadmil.heads.fcn.FCNHead"


def test_eval_recomputes_the_metrics_from_the_run_dir_alone(trained_run):
    work, run_dir, _ = trained_run
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    result = run_vadmil("eval", f"run={run_dir}", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    recomputed = json.loads((run_dir / "eval.json").read_text())["test"]
    original = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert recomputed.keys() == original.keys()
    for key, value in original.items():
        assert recomputed[key] == pytest.approx(value, abs=1e-6), key
    assert "frame_auc" in result.stdout


def test_eval_of_an_unfinished_run_is_a_one_line_error(tmp_path):
    (tmp_path / "half").mkdir()
    assert_user_error(run_vadmil("eval", "run=half", cwd=tmp_path), "half", "config.yaml")


def test_unknown_config_option_fails_naming_it(tmp_path):
    result = run_vadmil("train", "model=nope", cwd=tmp_path)
    assert result.returncode != 0 and "model/nope" in result.stderr


def test_missing_store_fails_before_any_training(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("video_id,split,label,intervals\na,train,1,0-5\nb,test,0,\n")
    result = run_vadmil(
        "train",
        "dataset=manifest",
        "dataset.store=nowhere.h5",
        f"dataset.annotations.path={manifest}",
        cwd=tmp_path,
    )
    assert_user_error(result, "nowhere.h5", "does not exist")
    (run_dir,) = (tmp_path / "runs" / "manifest" / "fcn").iterdir()
    assert (run_dir / "error.txt").is_file() and not (run_dir / "metrics.json").exists()


def test_bad_inputs_give_one_line_errors(tiny_data, tmp_path):
    store, manifest = tiny_data
    base = ["train", "dataset=manifest", f"dataset.store={store}", "trainer.enable_progress_bar=false"]
    # Config expects another feature dim.
    result = run_vadmil(
        *base, f"dataset.annotations.path={manifest}", "dataset.feature_dim=2048", cwd=tmp_path
    )
    assert_user_error(result, "16-d features", "2048-d")
    # Annotation ids absent from the store.
    rows = json.loads(Path(manifest).read_text())["videos"]
    rows.append({"video_id": "not_in_store", "split": "test", "label": 0})
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"videos": rows}))
    assert_user_error(run_vadmil(*base, f"dataset.annotations.path={extra}", cwd=tmp_path), "not_in_store")
    # A training split without abnormal videos.
    normal_train = [
        r for r in rows if not (r["split"] == "train" and r["label"] == 1) and r["video_id"] != "not_in_store"
    ]
    no_abnormal = tmp_path / "no_abnormal.json"
    no_abnormal.write_text(json.dumps({"videos": normal_train}))
    assert_user_error(
        run_vadmil(*base, f"dataset.annotations.path={no_abnormal}", cwd=tmp_path), "0 abnormal"
    )


def test_nan_features_and_foreign_files_are_refused(tiny_data, tmp_path):
    store, manifest = tiny_data
    broken = tmp_path / "nan.h5"
    shutil.copy(store, broken)
    with h5py.File(broken, "a") as f:
        victim = sorted(f["videos"])[-1]
        f["videos"][victim]["features"][0, 0, 0] = np.inf
    args = [
        "train",
        "dataset=manifest",
        f"dataset.annotations.path={manifest}",
        "trainer.enable_progress_bar=false",
    ]
    assert_user_error(run_vadmil(*args, f"dataset.store={broken}", cwd=tmp_path), victim, "NaN/Inf")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    assert_user_error(
        run_vadmil(*args, f"dataset.store={foreign}", cwd=tmp_path), "not a vadmil feature store"
    )


def test_help_and_unknown_command(tmp_path):
    top = run_vadmil("--help", cwd=tmp_path)
    assert top.returncode == 0 and "train" in top.stdout and "eval" in top.stdout
    train_help = run_vadmil("train", "--help", cwd=tmp_path)
    assert (
        train_help.returncode == 0
        and "vadmil train" in train_help.stdout
        and f"model: {', '.join(MODELS)}" in train_help.stdout
    )
    unknown = run_vadmil("frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown command 'frobnicate'" in unknown.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, tmp_path):
    result = run_inprocess(
        command, "--help", cwd=tmp_path
    )  # in this process: help needs no start-up per command
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"vadmil {command}" in result.stdout

"""The logger and callbacks config groups: a tiny training with each offline tracker (the real packages) records
the validation AUC and the test results; the selection checkpoint is required, the oracle optional."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError
from vadmil.rundir import LOGS, RunDir
from vadmil.training.train import train

CONF = Path(config_dir())
LOGGERS = sorted(p.stem for p in (CONF / "logger").glob("*.yaml"))
TINY = [
    "trainer.max_steps=8",
    "trainer.log_every_n_steps=2",
    "data.batch_size=8",
    "data.batches_per_epoch=4",
    "trainer.enable_progress_bar=false",
]


def _compose(overrides: list[str]):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides)


def _train(tiny_data, run_dir: Path, *overrides: str) -> dict:
    store, manifest = tiny_data
    run_dir.mkdir()  # Hydra makes it for `vadmil train`
    cfg = _compose(["dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
                    f"paths.runs={run_dir.parent}", "oracle.every=1", *TINY, *overrides])  # fmt: skip
    return train(cfg, run_dir)


def test_every_logger_option_composes_under_its_own_name():
    for name in LOGGERS:
        assert list(_compose([f"logger={name}"]).logger) == [name]
    assert list(_compose([]).logger) == ["csv"]  # the default
    assert _compose([]).logger.csv.version == LOGS  # where vadmil/rundir.py says a run's logs are
    assert set(_compose(["logger=[csv,tensorboard]"]).logger) == {"csv", "tensorboard"}


def test_csv_logger_gets_validation_auc_and_final_test_results(tiny_data, tmp_path):
    metrics = _train(tiny_data, tmp_path / "run")
    rows = list(csv.DictReader((RunDir(tmp_path / "run").logs / "metrics.csv").open()))
    assert any(r.get("val/video_auc") for r in rows)
    final = [r for r in rows if r.get("test/frame_auc")]
    assert len(final) == 1 and float(final[0]["test/frame_auc"]) == pytest.approx(
        metrics["test"]["frame_auc"]
    )
    assert float(final[0]["oracle_test/frame_auc"]) == pytest.approx(metrics["oracle_test"]["frame_auc"])


def test_tensorboard_logger_writes_event_files_with_validation_auc(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = _train(tiny_data, tmp_path / "run", "logger=tensorboard")
    events = sorted((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    scalars = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload().Tags()["scalars"]
    assert {"val/video_auc", "train/loss", "test/frame_auc", "val/selected_video_auc"} <= set(scalars)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert acc.Scalars("test/frame_auc")[-1].value == pytest.approx(metrics["test"]["frame_auc"], abs=1e-6)
    assert not (tmp_path / "run" / "logs").exists()  # only the chosen logger


def test_mlflow_logger_records_runs_in_a_local_sqlite_store(tiny_data, tmp_path):
    import mlflow

    metrics = _train(tiny_data, tmp_path / "run", "logger=mlflow", "seed=3")
    db = tmp_path / "mlflow.db"  # ${paths.runs}/mlflow.db
    assert db.is_file()
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("vadmil_manifest").experiment_id])
    assert run.info.run_name == f"{metrics['head']}_seed3" and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val/video_auc")]
    assert run.data.metrics["test/frame_auc"] == pytest.approx(metrics["test"]["frame_auc"])
    assert run.data.params["seed"] == "3" and run.data.tags["run_dir"] == str(tmp_path / "run")


def test_wandb_logger_writes_an_offline_run(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(tiny_data, tmp_path / "run", "logger=wandb")
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))  # the run's record, for `wandb sync`


def test_without_the_oracle_callback_no_oracle_figure(tiny_data, tmp_path):
    metrics = _train(tiny_data, tmp_path / "run", "callbacks=checkpoint")
    assert "oracle_test" not in metrics
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert "oracle_test" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_the_selection_checkpoint_is_required(tiny_data, tmp_path):
    with pytest.raises(VadmilError, match="SelectionCheckpoint"):
        _train(tiny_data, tmp_path / "run", "callbacks=oracle")
    with pytest.raises(InstantiationException, match="monitor cannot be set"):  # one line from `vadmil train`
        _train(tiny_data, tmp_path / "run2", "+callbacks.checkpoint.monitor=train/loss")


def test_extra_lightning_callbacks_come_from_config(tiny_data, tmp_path):
    _train(tiny_data, tmp_path / "run", "callbacks=[default,lr_monitor]")
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "metrics.csv").open()))
    assert any(k.startswith("lr-") for k in rows[0])


def test_the_tracker_does_not_label_leaderboard_rows():
    from vadmil.report.keys import variant_overrides

    overrides = ["logger=mlflow", "logger.mlflow.tracking_uri=sqlite:///x.db", "model.head.dropout=0.3"]
    assert variant_overrides(overrides) == ("model.head.dropout=0.3",)


def _open_mlflow_run(args: tuple[str, str]) -> str:
    from vadmil.training.callbacks import mlflow_logger

    uri, name = args
    return mlflow_logger(experiment_name="parallel", run_name=name, tracking_uri=uri).run_id


def test_parallel_jobs_share_one_new_mlflow_store(tmp_path):
    """Sweep jobs started together (joblib, submitit) create the SQLite store once, not racing for its tables."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import mlflow

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        run_ids = list(pool.map(_open_mlflow_run, [(uri, f"job{i}") for i in range(3)]))
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids) and len(set(run_ids)) == 3

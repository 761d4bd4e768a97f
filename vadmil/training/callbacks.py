"""The ``logger`` and ``callbacks`` config groups of `vadmil train` (conf/logger/, conf/callbacks/): build them,
find the two callbacks training relies on, and hand the loggers the final test figures.

Each group option adds named ``_target_`` nodes (``logger.csv``, ``callbacks.checkpoint``, ...), so several can be
selected at once (``logger=[csv,tensorboard]``) and any one removed (``~callbacks.oracle``) or added from the command
line (``+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger

from vadmil.errors import VadmilError
from vadmil.rundir import BEST, RunDir
from vadmil.training.oracle import OracleTest

SELECTION_METRIC = "val/selection"  # the validation video AUC plus a tie-break (vadmil/training/module.py)


class SelectionCheckpoint(ModelCheckpoint):
    """The checkpoint that validation selects: the best ``val/selection`` (validation video AUC, ties to the
    later checkpoint) kept as ``<run dir>/checkpoints/best.ckpt`` — the run dir being the trainer's
    ``default_root_dir``. Other ``ModelCheckpoint`` options (``save_last``, ...) pass through."""

    def __init__(self, **kwargs):
        fixed = {"dirpath", "filename", "monitor", "mode", "save_top_k"} & set(kwargs)
        if fixed:
            raise VadmilError(
                f"callbacks.checkpoint: {', '.join(sorted(fixed))} cannot be set: vadmil keeps the checkpoint "
                "with the best validation AUC as checkpoints/best.ckpt; add another ModelCheckpoint to keep more"
            )
        super().__init__(filename=BEST, monitor=SELECTION_METRIC, mode="max", save_top_k=1,
                         auto_insert_metric_name=False, **kwargs)  # fmt: skip

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.dirpath = str(RunDir(trainer.default_root_dir).checkpoints)  # the run dir owns the layout
        super().setup(trainer, pl_module, stage)


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (no-op for None, or where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no parallel sweep jobs share a store there by default
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mlflow_logger(**kwargs) -> Logger:
    """Lightning's ``MLFlowLogger`` (same arguments) whose store, experiment and run are created at once, under a
    file lock beside a SQLite store: parallel sweep jobs sharing one store otherwise race to create its tables."""
    from pytorch_lightning.loggers import MLFlowLogger

    uri = str(kwargs.get("tracking_uri") or "")
    lock = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = db.with_name(db.name + ".lock")
    with _file_lock(lock):
        logger = MLFlowLogger(**kwargs)
        _ = logger.experiment  # creates the tables, the experiment and this run now
    return logger


def _build(group: str, nodes: DictConfig | None, kind: type) -> list:
    built = []
    for name, node in (nodes or {}).items():
        if node is None:  # logger.csv=null / callbacks.oracle=null switch one off
            continue
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise VadmilError(
                f"{group}.{name} has no _target_; give a {kind.__name__} config (see conf/{group}/)"
            )
        obj = instantiate(node)
        if not isinstance(obj, kind):
            raise VadmilError(f"{group}.{name}: {node._target_} is not a {kind.__module__}.{kind.__name__}")
        built.append(obj)
    return built


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers of ``cfg.logger`` (default ``logger=csv``; none when it is empty)."""
    return _build("logger", cfg.get("logger"), Logger)


def build_callbacks(cfg: DictConfig) -> tuple[list[pl.Callback], SelectionCheckpoint, OracleTest | None]:
    """(every callback of ``cfg.callbacks``, the selection checkpoint, the oracle if it is on)."""
    callbacks = _build("callbacks", cfg.get("callbacks"), pl.Callback)
    selection = [c for c in callbacks if isinstance(c, SelectionCheckpoint)]
    if len(selection) != 1:
        raise VadmilError(
            f"callbacks: found {len(selection)} {SelectionCheckpoint.__name__} callbacks; vadmil selects the "
            "checkpoint on validation with exactly one (callbacks.checkpoint, conf/callbacks/checkpoint.yaml)"
        )
    oracle = next((c for c in callbacks if isinstance(c, OracleTest) and c.every > 0), None)
    return callbacks, selection[0], oracle


def log_final(loggers: Iterable[Logger], metrics: Mapping[str, object], step: int) -> None:
    """Give every logger the run's numeric results (``test/...``, ``oracle_test/...``, the selected validation
    AUC), then close it: Lightning finalises loggers after ``fit``, before the test split is scored."""
    for logger in loggers:
        logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
        logger.finalize("success")
        if isinstance(logger, WandbLogger):  # a W&B run stays open until finished (one process, many runs)
            logger.experiment.finish()


def final_metrics(metrics: Mapping) -> dict[str, float]:
    """The numbers of ``metrics.json`` worth comparing across runs in a tracker: test and oracle frame metrics,
    the selected validation AUC and the timings."""
    out = {  # val/selected_video_auc; unsupervised heads have none, and val/selected_normal_error instead
        f"val/selected_{key}": value
        for key, value in (metrics.get("validation") or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    for group in ("test", "oracle_test"):
        for key, value in (metrics.get(group) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"{group}/{key}"] = value
    for key in ("fit_seconds", "test_seconds", "test_frames_per_second"):
        if isinstance(metrics.get(key), int | float):
            out[f"time/{key}"] = metrics[key]
    return out

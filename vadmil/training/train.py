"""`train(cfg)`: fit one head, select its checkpoint on validation, test it, write the run dir (the library side
of `vadmil train`; :mod:`vadmil.commands.train` is the command)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

from vadmil import __version__
from vadmil.data.datamodule import MILDataModule
from vadmil.data.store import FeatureStore
from vadmil.data.windows import datamodule_for
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import evaluate_module
from vadmil.rundir import RunDir, load_checkpoint, save_predictions, write_json
from vadmil.training import normal_only
from vadmil.training.callbacks import build_callbacks, build_loggers, final_metrics, log_final
from vadmil.training.module import MILModule
from vadmil.training.schedule import validation_schedule
from vadmil.training.stages import initialise
from vadmil.training.timing import FitTimer

log = logging.getLogger("vadmil.training.train")
PATH_KEYS = ("store", "path", "ids_path", "annotation_path", "manifest", "root")


def resolve_config(cfg: DictConfig) -> DictConfig:
    """The fully resolved config with every file path made absolute, so a run dir is self-contained."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))

    def absolutise(node):
        if isinstance(node, DictConfig):
            for key in node:
                value = node[key]
                if key in PATH_KEYS and isinstance(value, str) and value:
                    node[key] = to_absolute_path(value)
                elif isinstance(value, DictConfig):
                    absolutise(value)

    absolutise(resolved.dataset)
    return resolved


def load_annotations(dataset: DictConfig) -> tuple[dict, dict]:
    """(train, test) annotations: id → VideoLabel, from the dataset's loader configs."""
    if dataset.get("prepare") is not None:
        instantiate(dataset.prepare)
    return instantiate(dataset.annotations.train), instantiate(dataset.annotations.test)


def make_datamodule(cfg: DictConfig, train_videos: dict, test_videos: dict, **overrides) -> MILDataModule:
    """The data module of ``cfg.data`` on ``cfg.dataset.store`` (``standardise`` belongs to the model): MIL bags,
    or snippet windows for unsupervised heads and self-training (:func:`~vadmil.data.windows.datamodule_for`)."""
    data = {k: v for k, v in cfg.data.items() if k != "standardise"}
    kind, extra = datamodule_for(cfg)
    return kind(store=cfg.dataset.store, train=train_videos, test=test_videos,
                feature_dim=cfg.dataset.feature_dim, end_inclusive=cfg.eval.end_inclusive,
                frame_span=cfg.eval.frame_span, **{**data, **extra, **overrides})  # fmt: skip


def store_summary(store: FeatureStore) -> dict:
    """What a run records about its features: path, the recipe, and the producing config (which `vadmil score`
    re-runs on new videos)."""
    return {
        "store": str(store.path),
        **store.recipe(),
        "mean_norm": store.mean_norm(),
        "extraction_config": store.attrs.get("extraction_config", ""),
    }


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train ``cfg`` (the composed ``conf/train.yaml``) into ``run_dir`` (default: Hydra's output dir); returns
    what it writes to ``metrics.json``."""
    run = RunDir(run_dir if run_dir is not None else HydraConfig.get().runtime.output_dir)
    run_dir = run.path
    with open_dict(cfg):  # loggers and callbacks write under ${run_dir}
        cfg.run_dir = str(run_dir.absolute())
    if cfg.get("training", {}).get("mode") == "self_training":  # stages, each a train() of its own
        from vadmil.training.self_training import train_self_training

        return train_self_training(cfg, run_dir)
    cfg = resolve_config(cfg)
    OmegaConf.save(cfg, run.config)
    pl.seed_everything(cfg.seed, workers=True)
    train_videos, test_videos = load_annotations(cfg.dataset)
    dm = make_datamodule(cfg, train_videos, test_videos)
    module = MILModule.from_config(cfg, dm.stream_dims)
    if module.standardiser is not None:
        module.standardiser.set_statistics(*dm.feature_statistics())
    initialise(module, cfg)  # self-training stages may start from the previous stage's weights
    features = {**store_summary(dm.store), "streams": dm.stream_dims, "fusion": dm.fusion}
    module.run_info = {
        "config": OmegaConf.to_container(cfg),
        "features": features,
        "vadmil_version": __version__,
    }
    log.info(
        "%s on %s: %d train / %d val / %d test videos, %d-d features x %d crops",
        cfg.model.name, cfg.dataset.name, len(dm.train_ids), len(dm.val_ids), len(dm.test_ids),
        dm.feature_dim, dm.n_crops,
    )  # fmt: skip
    if module.normal_only:
        print(f"{cfg.model.name}: {normal_only.SUPERVISION_NOTE}", flush=True)

    callbacks, checkpoint, oracle = build_callbacks(cfg)
    timer = FitTimer()  # first: its validation time ends before the oracle and checkpointing run
    monitor = ("val/normal_error", "min") if module.normal_only else ("val/video_auc", "max")
    trainer_kwargs, schedule_callbacks, schedule = validation_schedule(cfg.trainer, dm, monitor)
    if overrides := normal_only.trainer_overrides(module):
        schedule = "once, after the statistics are fitted (one step)"
    log.info("validation %s", schedule)
    loggers = build_loggers(cfg)
    for logger in loggers:
        logger.log_hyperparams(module.run_info["config"])
    trainer = pl.Trainer(
        **{**trainer_kwargs, "max_epochs": -1, **overrides}, num_sanity_val_steps=0, enable_model_summary=False,
        logger=loggers or False, default_root_dir=run_dir, callbacks=[timer, *schedule_callbacks, *callbacks],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*too few batches.*")
        warnings.filterwarnings("ignore", ".*returned `None`.*")  # statistics heads: no optimiser, no loss
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_seconds = time.perf_counter() - start - (oracle.seconds if oracle else 0.0)
    times = timer.summary(fit_seconds, exclude=oracle.seconds if oracle else 0.0)

    if not checkpoint.best_model_path:
        raise VadmilError(
            f"training stopped after {trainer.global_step} steps, before its first validation ({schedule}), so "
            "no checkpoint was selected; raise trainer.max_steps, lower data.batches_per_epoch or validate by "
            "steps (trainer.val_check_interval=auto)"
        )
    best = load_checkpoint(checkpoint.best_model_path)
    module.load_state_dict(best["state_dict"])
    start = time.perf_counter()
    test, scores, frames = evaluate_module(module, dm.store, dm.test_videos, dm.test_dataloader(), cfg.eval)
    test_seconds = time.perf_counter() - start
    save_predictions(run.predictions, scores, frames)
    if oracle:  # the validation-selected checkpoint is one of the oracle's candidates
        oracle.consider_selected(int(best["epoch"]), int(best["global_step"]), scores, test)
    metrics = {
        "status": "complete",
        "dataset": cfg.dataset.name,
        "head": cfg.model.name,
        "seed": cfg.seed,
        "supervision": getattr(dm, "supervision", "weak"),
        "test": test,
        "validation": {"video_auc": float(best["vadmil"]["val_video_auc"])},
        "selection": "validation video AUC (ties: later checkpoint)",
        "selected_epoch": int(best["epoch"]),
        "selected_step": int(best["global_step"]),
        # Fit time without oracle evaluations = train (steps, data included) + validation + the rest (setup,
        # checkpoint writes); `validation_schedule` is when validation ran.
        **times,
        "validation_schedule": schedule,
        # Scoring throughput: reading the test features, the forward pass, frame expansion and the metrics.
        "test_seconds": round(test_seconds, 3),
        "test_frames_per_second": round(test["n_frames"] / test_seconds, 1) if test_seconds > 0 else None,
        "primary_metric": cfg.dataset.get("primary_metric", "frame_auc"),
        "n_parameters": module.n_parameters,
        "n_videos": {"train": len(dm.train_ids), "val": len(dm.val_ids), "test": len(dm.test_ids)},
        "eval_protocol": OmegaConf.to_container(cfg.eval),
        "features": features,
        "vadmil_version": __version__,
    }
    if module.normal_only:
        metrics.update(normal_only.metrics_overrides(best, module))
    if oracle:
        metrics["oracle_test"] = oracle.summary()
    log_final(loggers, final_metrics(metrics), trainer.global_step)
    write_json(run.metrics, metrics)  # written last: its presence marks a complete run
    _print_summary(run_dir, metrics)
    return metrics


def _print_summary(run_dir: Path, metrics: dict) -> None:
    t, val_auc = metrics["test"], metrics["validation"].get("video_auc")
    print(
        f"{metrics['head']} on {metrics['dataset']} (seed {metrics['seed']}): "
        f"test frame AUC {t['frame_auc']:.4f}, AP {t['frame_ap_step']:.4f} (step) / {t['frame_ap_trapz']:.4f} "
        f"(trapz), AUC on abnormal videos {t['frame_auc_abnormal']:.4f}, FAR@0.5 {t['far']:.4f}; "
        + (
            f"val video AUC {val_auc:.4f}"
            if val_auc is not None
            else f"supervision: {metrics['supervision']}"
        )
        + f" at epoch {metrics['selected_epoch']}\n"
        + (
            f"oracle (best-on-test, leaks the test set): {o['chosen_on']} {o[o['chosen_on']]:.4f} at epoch "
            f"{o['epoch']} of {o['n_evaluations']} test evaluations\n"
            if (o := metrics.get("oracle_test"))
            else ""
        )
        + f"run dir: {run_dir}",
        flush=True,
    )

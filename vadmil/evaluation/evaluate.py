"""Recompute a finished run's test metrics from the run dir alone (the library side of `vadmil eval`)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.data.checks import check_split
from vadmil.data.eval_batches import DEFAULT_MAX_ROWS, length_batched_loader
from vadmil.data.store import FeatureStore
from vadmil.data.streams import open_run_streams, stream_dims_of
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import evaluate_module
from vadmil.rundir import RunDir, load_checkpoint, load_run_config, restore_module


def evaluate_run(
    run_dir: str | Path, eval_overrides: dict | None = None, allow_unfinished: bool = False
) -> dict:
    """Rebuild the head from ``<run>/config.yaml``, load ``<run>/checkpoints/best.ckpt``, score the test split.
    A run without ``metrics.json`` (killed, failed or still training) is refused unless ``allow_unfinished``: its
    best.ckpt may be a mid-training checkpoint."""
    run = RunDir(run_dir)
    run.require_finished()
    if not run.metrics.is_file() and not allow_unfinished:
        state = f"failed ({run.error.name})" if run.error.is_file() else "was killed or is still running"
        raise VadmilError(
            f"{run.path} has no {run.metrics.name}: its training {state}, so {run.checkpoint.relative_to(run.path)} "
            "may be a mid-training checkpoint; pass allow_unfinished=true to evaluate it anyway"
        )
    cfg = load_run_config(run.config)  # checked: only allow-listed _target_s are built from it
    if eval_overrides:
        cfg.eval = OmegaConf.merge(cfg.eval, {k: v for k, v in eval_overrides.items() if v is not None})
    store = open_run_streams(FeatureStore(cfg.dataset.store), cfg)  # the streams the run trained on
    test_videos = instantiate(cfg.dataset.annotations.test)
    missing = [v for v in test_videos if v not in store]
    if missing:
        raise VadmilError(
            f"{len(missing)} test video(s) of the run's annotations are not in its store {store.path}, e.g. "
            f"'{missing[0]}'; was the store or the annotation file replaced since training?"
        )
    test_videos = check_split(store, test_videos, "test", cfg.eval.end_inclusive, cfg.eval.frame_span)
    module = restore_module(
        cfg, stream_dims_of(store), load_checkpoint(run.checkpoint)["state_dict"], run.checkpoint
    )
    # runs saved before data.eval_batch_rows existed score with the default budget
    rows = cfg.data.get("eval_batch_rows", DEFAULT_MAX_ROWS)
    loader = length_batched_loader(store, test_videos, list(test_videos), cfg.data.normalise, rows)
    test, _, _ = evaluate_module(module, store, test_videos, loader, cfg.eval)
    return {"run": str(run.path), "test": test, "eval_protocol": OmegaConf.to_container(cfg.eval)}

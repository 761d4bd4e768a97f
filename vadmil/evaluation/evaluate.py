"""Recompute a finished run's test metrics from the run dir alone (the library side of `vadmil eval`)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.data.datamodule import video_loader
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import evaluate_module
from vadmil.training.train import build_module


def evaluate_run(run_dir: str | Path, eval_overrides: dict | None = None) -> dict:
    """Rebuild the head from ``<run>/config.yaml``, load ``<run>/checkpoints/best.ckpt``, score the test split."""
    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoints" / "best.ckpt"
    for path, what in ((config_path, "its resolved config"), (ckpt_path, "its selected checkpoint")):
        if not path.is_file():
            raise VadmilError(f"{run_dir} is not a finished vadmil run: {path.name} ({what}) is missing")
    cfg = OmegaConf.load(config_path)
    if eval_overrides:
        cfg.eval = OmegaConf.merge(cfg.eval, {k: v for k, v in eval_overrides.items() if v is not None})
    store = FeatureStore(cfg.dataset.store)
    test_videos = instantiate(cfg.dataset.annotations.test)
    module = build_module(cfg, store.feature_dim)
    module.load_state_dict(torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"])
    loader = video_loader(store, test_videos, list(test_videos), cfg.data.normalise, cfg.data.eval_batch_size)
    test, _, _ = evaluate_module(module, store, test_videos, loader, cfg.eval)
    return {"run": str(run_dir), "test": test, "eval_protocol": OmegaConf.to_container(cfg.eval)}

"""`vadmil train`: fit one head, select its checkpoint on validation, test it, write the run dir
(see :func:`vadmil.training.train.train`)."""

from __future__ import annotations

import math

import hydra
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.training.train import train


@guarded
def _train_guarded(cfg: DictConfig) -> float:
    return train(cfg)["validation"]["video_auc"]


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train; return the validation video AUC — what a Hydra sweeper (Optuna) optimises, never a test metric.
    A failed run returns None (in a multirun, after writing ``error.txt``): the Optuna sweeper records the trial
    as failed and goes on. A non-finite AUC is returned as None too, since Optuna refuses NaN values."""
    value = _train_guarded(cfg)
    if value is None or not math.isfinite(value):
        return None
    return float(value)

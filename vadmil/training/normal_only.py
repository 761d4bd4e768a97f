"""How :class:`~vadmil.training.module.MILModule` fits the unsupervised heads (``model.normal_only: true``) on the
normal training videos only (see :mod:`vadmil.data.windows`):

- statistics heads (kNN memory bank, Gaussian moments; ``head.trainable`` False) are fitted once, at the start of
  ``trainer.fit``, from every snippet of the normal training videos as the head sees them (standardised, each
  crop a snippet); the trainer then runs a single step and a single validation;
- gradient heads (autoencoder, predictor) train on windows of normal training videos, loss = their mean error;
- every validation scores the normal validation videos: their raw scores calibrate the head
  (:class:`~vadmil.heads.normality.ScoreCalibration`) and their mean raw score (lower is better) selects the
  checkpoint. No label of an abnormal video is used, in training or in selection.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from vadmil.errors import VadmilError
from vadmil.heads.normality import NormalModelHead
from vadmil.heads.output import HeadOutput

SUPERVISION = "none"
SUPERVISION_NOTE = (
    "unsupervised: fitted on the training split's normal videos only; the features and labels of abnormal "
    "training videos are not used (checkpoint selection: mean score of held-out normal validation videos)"
)


def check_head(head) -> None:
    if not isinstance(head, NormalModelHead):
        raise VadmilError(
            f"model.normal_only is set but the head {type(head).__name__} does not model normal features; use "
            "model=knn, gaussian, feature_ae or feature_predictor"
        )


def trainer_overrides(module) -> dict:
    """Statistics heads are fitted before the first step: one step, one validation."""
    if module.normal_only and not module.head.trainable:
        return {"max_epochs": 1, "max_steps": -1, "limit_train_batches": 1, "val_check_interval": 1.0,
                "check_val_every_n_epoch": 1}  # fmt: skip
    return {}


def _snippets(module, loader) -> Iterator[torch.Tensor]:
    """Valid snippets [n, D] of every video in ``loader``, each crop its own snippet, as the head sees them."""
    for batch in loader:
        x, mask = batch["x"].to(module.device), batch["mask"].to(module.device)
        if module.standardiser is not None:
            x = module.standardiser(x, mask)
        yield x.transpose(1, 2)[mask].reshape(-1, x.shape[-1])  # [B, T, C, D] → valid [n·C, D]


@torch.no_grad()
def fit_statistics(module, datamodule) -> None:
    """Fit a statistics head on the normal training videos of ``datamodule`` (a NormalOnlyDataModule)."""
    loader = datamodule.normal_fit_loader()
    module.head.fit_normal(lambda: _snippets(module, loader))


def valid_raw(out: HeadOutput, mask: torch.Tensor) -> torch.Tensor:
    """Raw scores of the valid snippets of every crop: folded out.raw [B, C, T], mask [B, T] → [n]."""
    return out.raw.transpose(1, 2)[mask.bool()].reshape(-1).detach()


def end_validation(module, raw: list[torch.Tensor]) -> float:
    """Calibrate the head on the held-out normal snippets' raw scores; returns their mean (the selection
    criterion, lower is better)."""
    if not raw:
        raise VadmilError(
            "no normal validation video to calibrate the unsupervised head; raise data.val_fraction"
        )
    values = torch.cat(raw)
    module.head.calibration.fit(values)
    return float(values.double().mean())


def metrics_overrides(best: dict, module) -> dict:
    """What ``metrics.json`` says differently for an unsupervised head, from its selected checkpoint ``best``
    (statistics heads have no loss: their objective is named ``statistics``)."""
    info = best.get("vadmil") or {}
    return {
        **({} if module.head.trainable else {"objective": "statistics"}),
        "validation": {"video_auc": None, "normal_error": float(info.get("val_normal_error", float("nan")))},
        "selection": "lowest mean raw score of the normal validation videos (ties: later checkpoint)",
        "supervision_note": SUPERVISION_NOTE,
    }

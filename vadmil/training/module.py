"""MILModule: the one LightningModule that trains and evaluates every head."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from vadmil.evaluation.metrics import VideoAUC
from vadmil.heads.fusion import build_head
from vadmil.heads.output import HeadOutput
from vadmil.losses.common import bag_max
from vadmil.losses.objective import Objective
from vadmil.training import normal_only as normal_fit
from vadmil.training.standardise import FeatureStandardiser

# Ties in validation AUC (common on small validation splits) go to the later checkpoint: this bonus is far below
# the smallest possible AUC difference (1 / (n_normal * n_abnormal)) of any realistic validation split.
_TIE_BREAK = 1e-7


class MILModule(pl.LightningModule):
    """Crop folding, the objective, the optimiser and validation for any head.

    Batches carry ``x`` [B, C, T, D], ``mask`` [B, T] and ``label`` [B]. The head sees [B·C, T, D]; its output is
    folded back to [B, C, T] for the losses, and scores are averaged over crops for evaluation.

    Args:
        head: a head module (``forward(features [N, T, D], mask [N, T]) -> HeadOutput``).
        objective: the weighted loss terms.
        optimizer: ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
        scheduler: optional ``optimizer -> LRScheduler``, stepped every training step.
        decay_biases: when False, biases and normalisation parameters get no weight decay (Keras-style L2
            penalties on weights only).
        standardiser: optional input standardisation (statistics set from the training split before fitting).
        normal_only: an unsupervised head fitted on normal videos only (see :mod:`vadmil.training.normal_only`).
    """

    def __init__(
        self,
        head: nn.Module,
        objective: Objective | None = None,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        decay_biases: bool = True,
        standardiser: FeatureStandardiser | None = None,
        normal_only: bool = False,
    ):
        super().__init__()
        self.head, self.objective, self.standardiser = head, objective, standardiser
        self.optimizer_factory, self.scheduler_factory, self.decay_biases = optimizer, scheduler, decay_biases
        self.val_auc = VideoAUC()
        self.run_info: dict = {}  # resolved config and store recipe, saved into every checkpoint
        self.val_video_auc = float("nan")  # of the last validation; saved with its checkpoint
        self.normal_only, self.val_normal_error, self._val_raw = normal_only, float("nan"), []
        if normal_only:
            normal_fit.check_head(head)

    @classmethod
    def from_config(cls, cfg: DictConfig, in_dim: int | Mapping[str, int]) -> MILModule:
        """The head (sized ``in_dim``, from the store: one dim, or stream name → dim fused as ``data.fusion``
        says, see :mod:`vadmil.heads.fusion`), objective and optimiser of ``cfg.model``; with ``data.standardise``
        (always, for unsupervised heads) an input standardiser whose statistics are set before fitting or loaded
        from a checkpoint."""
        normal_only = bool(cfg.model.get("normal_only", False))
        dims = dict(in_dim) if isinstance(in_dim, Mapping) else {"rgb": int(in_dim)}
        in_dim = sum(dims.values())
        fusion = (cfg.get("data") or {}).get("fusion", "early")
        return cls(
            head=build_head(lambda d: instantiate(cfg.model.head, in_dim=d), dims, fusion),
            objective=instantiate(cfg.model.objective),
            optimizer=instantiate(cfg.model.optimizer),
            scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
            decay_biases=cfg.model.get("decay_biases", True),
            standardiser=FeatureStandardiser(in_dim) if cfg.data.get("standardise") or normal_only else None,
            normal_only=normal_only,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        b, c, t, d = x.shape
        if self.standardiser is not None:
            x = self.standardiser(x, mask)
        out = self.head(x.reshape(b * c, t, d), mask.repeat_interleave(c, dim=0))
        return out.fold(b, c)

    def on_fit_start(self) -> None:
        if self.normal_only and not self.head.trainable:
            normal_fit.fit_statistics(self, self.trainer.datamodule)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if self.normal_only and not self.head.trainable:
            return None  # fitted in on_fit_start
        out = self(batch["x"], batch["mask"])
        total, parts = self.objective(out, batch)
        n = len(batch["label"])
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        for name, value in parts.items():
            self.log(f"train/loss/{name}", value, batch_size=n)
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["x"], batch["mask"])
        if self.normal_only:  # normal videos only: collected for calibration and selection
            self._val_raw.append(normal_fit.valid_raw(out, batch["mask"]))
            return
        scores = out.video_scores
        self.val_auc.update(bag_max(scores, batch["mask"]), batch["label"].long())

    def on_validation_epoch_end(self) -> None:
        progress = self.global_step / max(1, self.trainer.max_steps) if self.trainer.max_steps > 0 else 0.0
        if self.normal_only:
            self.val_normal_error = normal_fit.end_validation(self, self._val_raw)
            self._val_raw = []
            self.log("val/normal_error", self.val_normal_error, prog_bar=True)
            error = torch.as_tensor(self.val_normal_error, dtype=torch.float64)  # float64: see below
            self.log("val/selection", -error + _TIE_BREAK * progress)
            return
        auc = self.val_auc.compute()
        self.val_auc.reset()
        self.val_video_auc = float(auc)
        self.log("val/video_auc", auc, prog_bar=True)
        # float64: in float32 the bonus is below the resolution of an AUC near 1 and ties would go to the first
        self.log("val/selection", auc.double() + _TIE_BREAK * progress)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:  # statistics heads: fitted, not optimised
            return None
        if not self.decay_biases:
            decayed = [p for p in params if p.ndim > 1]
            params = [
                {"params": decayed},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
            ]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The validation AUC is computed here only (training reports the selected checkpoint's from its file).
        checkpoint["vadmil"] = {**self.run_info, "val_video_auc": self.val_video_auc}
        if self.normal_only:
            checkpoint["vadmil"]["val_normal_error"] = self.val_normal_error

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

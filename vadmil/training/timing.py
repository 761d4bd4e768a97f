"""Where a fit's time goes: training steps (data included) and validation, for ``metrics.json``."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class FitTimer(pl.Callback):
    """Add up the wall time of training steps and of validations.

    ``train_seconds``: every training step from the end of the previous one (or of the last validation), so it
    holds fetching and collating the batch, forward, backward and the optimiser step. ``validation_seconds``: each
    validation loop, from its start to its end (the loop, the AUC and logging; the checkpoint written after it
    and oracle test evaluations are in neither). Callbacks that act at the end of a validation (the oracle,
    checkpointing) run after this one, so their time falls into the next step's interval: subtract what they
    measure themselves (``exclude``).
    """

    def __init__(self):
        self.train_seconds = self.validation_seconds = 0.0
        self.n_validations = 0
        self._mark = self._val_start = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._mark
        self._mark = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        now = time.perf_counter()
        self.validation_seconds += now - self._val_start
        self.n_validations += 1
        self._mark = now

    def summary(self, fit_seconds: float, exclude: float = 0.0) -> dict:
        """The ``metrics.json`` time keys; ``exclude``: seconds spent inside the training intervals on work that
        is not training (oracle test evaluations)."""
        return {
            "fit_seconds": round(fit_seconds, 3),
            "train_seconds": round(max(0.0, self.train_seconds - exclude), 3),
            "validation_seconds": round(self.validation_seconds, 3),
            "n_validations": self.n_validations,
        }

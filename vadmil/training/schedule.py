"""When to validate: every N training steps whatever the epoch size, and optionally stop early.

An "epoch" of balanced MIL batches is one pass over the larger class, so its length follows the data set: 160
training videos make an epoch of 3 batches of 60 bags, and validating every epoch re-scores the validation split
every 3 steps. vadmil instead validates every ``trainer.val_check_interval`` training steps:

- an int N: every N steps, and once more at ``trainer.max_steps`` when that is not a multiple of N;
- ``auto`` (the default): N sized to the data, so that validation stays a small share of the fit on small and
  large data sets alike — N grows with the validation split's padded size relative to a training batch (both
  in snippet rows through the head), twice as fast when the validation features do not fit in memory
  (``data.val_cache_mb``) and are read at every validation;
- ``epoch``: every data epoch (``data.batches_per_epoch`` batches), vadmil's schedule before cadence in steps.

``trainer.early_stopping_patience`` P stops a fit after P validations in a row without a better validation video
AUC (null: train for ``trainer.max_steps``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping

from vadmil.errors import VadmilError

log = logging.getLogger(__name__)
KEYS = ("val_check_interval", "early_stopping_patience")  # vadmil's keys in the trainer config
# A validation's forward pass over R rows cost 0.41 of a training step over R rows (FCN, 10 x 2048-d, 2 cores;
# no backward, optimiser or dropout). Validating every AUTO_FACTOR x (validation rows / training-batch rows) steps
# then keeps validation near 5 % of the fit (measured: docs/benchmarks.md).
AUTO_FACTOR = 8.0
# Reading, normalising and padding the validation videos again added 20 % there (warm page cache); a cold or
# remote store costs more, so validations that read are spaced twice as far.
UNCACHED_FACTOR = 2.0


def auto_interval(dm, max_steps: int) -> int:
    """The ``auto`` cadence for data module ``dm``: steps between validations, between 1 and ``max_steps``."""
    val_rows, _ = dm.val_size()
    bag_length = (
        getattr(dm, "window", None) or dm.n_segments
    )  # windowed data modules train on snippet windows
    step_rows = dm.batch_size * (dm.n_crops if dm.crops == "stack" else 1) * bag_length
    factor = AUTO_FACTOR * (1.0 if dm.val_cached() else UNCACHED_FACTOR)
    return max(1, min(max_steps, math.ceil(factor * val_rows / step_rows)))


class ValidateAtEnd(pl.Callback):
    """Validate after the last step too: Lightning validates at multiples of the interval only, so without this
    the steps after the last multiple would never be candidates for selection."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True  # Lightning then validates before stopping


def validation_schedule(
    trainer_cfg: Mapping, dm, monitor: tuple[str, str] = ("val/video_auc", "max")
) -> tuple[dict, list[pl.Callback], str]:
    """(``pl.Trainer`` keyword arguments, callbacks, a description) for the cadence and early stopping of
    ``trainer_cfg`` (the ``trainer`` config; its other keys pass through unchanged). ``monitor``: the validation
    figure early stopping watches and whether higher is better."""
    kwargs = {k: v for k, v in trainer_cfg.items() if k not in KEYS}
    max_steps = int(kwargs.get("max_steps", -1))
    interval = trainer_cfg.get("val_check_interval", "auto")
    callbacks: list[pl.Callback] = []
    if interval == "epoch":
        kwargs.update(val_check_interval=1.0, check_val_every_n_epoch=1)
        described = "every epoch"
    else:
        if interval == "auto":
            if max_steps <= 0:
                raise VadmilError(
                    "trainer.val_check_interval=auto needs trainer.max_steps > 0; give a number"
                )
            interval = auto_interval(dm, max_steps)
        elif isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise VadmilError(
                f"trainer.val_check_interval={interval!r}: give a number of training steps ≥ 1, auto (sized to "
                "the data) or epoch (every data epoch)"
            )
        kwargs.update(val_check_interval=interval, check_val_every_n_epoch=None)
        callbacks.append(ValidateAtEnd())
        described = f"every {interval} steps"
    patience = trainer_cfg.get("early_stopping_patience")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise VadmilError(
                f"trainer.early_stopping_patience={patience!r}: give a number of validations ≥ 1 (null: off)"
            )
        # On the plain figure (not val/selection, whose tie-break bonus would count every tie as progress); a
        # validation counts as progress only when strictly better.
        callbacks.append(
            EarlyStopping(monitor[0], patience=patience, mode=monitor[1], check_on_train_epoch_end=False)
        )
        described += f", stopping after {patience} validations without a better {monitor[0]}"
    return kwargs, callbacks, described

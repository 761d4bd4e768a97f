"""`vadmil score video=<file or folder> checkpoint=<run dir or .ckpt>`: a video file → per-frame anomaly scores
(see :mod:`vadmil.score.scorer`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.errors import VadmilError
from vadmil.score.scorer import score


@hydra.main(config_path=config_dir(), config_name="score", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    _, failures = score(cfg)
    if failures:
        raise VadmilError(f"{len(failures)} video(s) could not be scored (reasons above)")

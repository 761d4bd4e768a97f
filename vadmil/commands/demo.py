"""`vadmil demo`: the whole pipeline on generated videos (see :mod:`vadmil.demo.pipeline`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.demo.pipeline import demo


@hydra.main(config_path=config_dir(), config_name="demo", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    demo(cfg)

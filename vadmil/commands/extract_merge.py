"""`vadmil extract-merge inputs=[a.h5,b.h5] output=c.h5`: shard stores → one store."""

from __future__ import annotations

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.extract.jobs import merge


@hydra.main(config_path=config_dir(), config_name="extract_merge", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    added = merge(list(cfg.inputs), cfg.output, progress=True)
    print(f"{to_absolute_path(cfg.output)}: {added} videos added from {len(cfg.inputs)} stores")

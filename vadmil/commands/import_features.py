"""`vadmil import format=<rtfm|wu|sultani|npy> input=... output=<store.h5>`: public feature files → a feature
store (see :mod:`vadmil.data.importing`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.data.importing import run_import
from vadmil.errors import VadmilError


@hydra.main(config_path=config_dir(), config_name="import", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    result = run_import(cfg)
    print(
        f"{result['output']}: {result['imported']} imported, {result['skipped']} already there, "
        f"{len(result['failed'])} failed; {result['total']} videos in the store, mean feature L2 norm "
        f"{result['mean_norm']:.3g} per snippet"
    )
    if result["failed"]:
        ids = ", ".join(v for v, _ in result["failed"][:8])
        raise VadmilError(
            f"{len(result['failed'])} video(s) could not be imported ({ids}); see the messages above"
        )

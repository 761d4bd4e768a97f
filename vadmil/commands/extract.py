"""`vadmil extract input=<videos> output=<store.h5>`: raw videos → feature store (one shard)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.errors import VadmilError
from vadmil.extract.jobs import extract
from vadmil.extract.pipeline import failures_path


@hydra.main(config_path=config_dir(), config_name="extract", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    result = extract(cfg)
    rate = result["snippets"] / result["seconds"] if result["seconds"] else 0.0
    print(f"{result['output']}: {result['extracted']} extracted, {result['skipped']} already there, "
          f"{len(result['failed'])} failed; {result['total']} videos in the store; {result['snippets']} snippets "
          f"in {result['seconds']:.1f} s ({rate:.1f} snippets/s)")  # fmt: skip
    if result["failed"]:
        raise VadmilError(
            f"{len(result['failed'])} video(s) failed (reasons above and in {failures_path(Path(result['output']))})"
        )

"""`vadmil eval run=<run dir>`: recompute a finished run's test metrics from the run dir alone; writes
``<run>/eval.json``."""

from __future__ import annotations

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from vadmil.commands.base import config_dir, guarded
from vadmil.evaluation.evaluate import evaluate_run
from vadmil.rundir import RunDir, write_json


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    run = RunDir(to_absolute_path(cfg.run))
    result = evaluate_run(run.path, OmegaConf.to_container(cfg.eval), bool(cfg.allow_unfinished))
    write_json(run.eval, result)
    for key, value in result["test"].items():
        for name, v in (
            value.items() if isinstance(value, dict) else [(key, value)]
        ):  # per-category AUCs: a line each
            name = f"{key}[{name}]" if isinstance(value, dict) else name
            print(f"{name:>20}: {v:.6g}" if isinstance(v, float) else f"{name:>20}: {v}")
    print(f"written: {run.eval}")

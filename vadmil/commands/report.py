"""`vadmil report runs=<dir or [dirs]> output=<dir>`: collect run dirs, rank them, write the leaderboard files."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf

from vadmil.commands.base import config_dir, guarded
from vadmil.report.figures import FigureOptions
from vadmil.report.leaderboard import ReportOptions, summary, write_report


@hydra.main(config_path=config_dir(), config_name="report", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    runs = cfg.runs if isinstance(cfg.runs, ListConfig) else [cfg.runs]
    roots = [Path(to_absolute_path(str(r))) for r in runs]
    video_ids = OmegaConf.to_container(cfg.video_ids) if cfg.video_ids else []
    options = ReportOptions(
        FigureOptions(
            cfg.curves, int(cfg.videos), [str(v) for v in video_ids], int(cfg.max_groups), int(cfg.max_points)
        )
    )
    result = write_report(roots, Path(to_absolute_path(cfg.output)), options)
    print(summary(result))
    print("written: " + ", ".join(str(p) for p in result["files"]), flush=True)

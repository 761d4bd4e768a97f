"""`vadmil gt-check gt=<gt-*.npy> list=<test list>`: compare vadmil's rebuilt frame ground truth with a released
concatenated gt-*.npy vector (see :mod:`vadmil.data.gt_check`)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.data.gt_check import check_ground_truth, load_order, load_released, report_lines, verdict
from vadmil.data.store import FeatureStore
from vadmil.rundir import write_json


@hydra.main(config_path=config_dir(), config_name="gt_check", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    released = load_released(to_absolute_path(cfg.gt))
    order = load_order(to_absolute_path(cfg.list))
    if cfg.dataset.get("prepare") is not None:
        instantiate(cfg.dataset.prepare)
    videos = instantiate(cfg.dataset.annotations.test)
    with FeatureStore(to_absolute_path(cfg.dataset.store)) as store:
        result = check_ground_truth(store, videos, order, released)
    if cfg.output:
        output = Path(to_absolute_path(cfg.output))
        output.parent.mkdir(parents=True, exist_ok=True)
        inputs = {"gt": str(cfg.gt), "list": str(cfg.list), "store": str(cfg.dataset.store)}
        write_json(output, {**inputs, **result})
        print(f"written: {output}")
    print("\n".join(report_lines(result)))
    s = result["summary"]
    if cfg.strict and not s["exact"]:
        lengths = f"released {s['released_frames']} frames, expected {s['expected_frames']}; "
        reason = (lengths if s["length_difference"] else "") + verdict(result)
        print(f"vadmil: error: gt-check failed (strict=true): {reason}", file=sys.stderr, flush=True)
        sys.exit(1)

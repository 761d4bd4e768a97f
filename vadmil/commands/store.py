"""`vadmil store compact store=<store.h5> [output=<copy.h5>]`: feature-store maintenance (see
:mod:`vadmil.data.store_compact`)."""

from __future__ import annotations

import sys

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from vadmil.commands.base import config_dir, guarded
from vadmil.errors import VadmilError, check_choice

ACTIONS = ("compact",)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@hydra.main(config_path=config_dir(), config_name="store", version_base="1.3")
@guarded(record=False)
def _run(cfg: DictConfig) -> None:
    from vadmil.data.store_compact import compact

    if OmegaConf.is_missing(cfg, "action"):
        raise VadmilError(
            f"vadmil store needs an action ({', '.join(ACTIONS)}): vadmil store compact store=<store.h5>"
        )
    check_choice("store action", cfg.action, ACTIONS, "vadmil store")
    if OmegaConf.is_missing(cfg, "store"):
        raise VadmilError(
            f"vadmil store {cfg.action} needs the store: vadmil store {cfg.action} store=<store.h5>"
        )
    output = to_absolute_path(cfg.output) if cfg.output else None
    result = compact(to_absolute_path(cfg.store), output, progress=cfg.progress)
    print(
        f"{result['output']}: one self-contained file, {result['videos']} videos, {_size(result['bytes_after'])} "
        f"(the store took {_size(result['bytes_before'])} with its segments and pending videos)"
    )


def main() -> None:
    # `vadmil store compact key=value ...`: the action word becomes the override action=compact for Hydra
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-") and "=" not in sys.argv[1]:
        sys.argv = [sys.argv[0], f"action={sys.argv[1]}", *sys.argv[2:]]
    _run()

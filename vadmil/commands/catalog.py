"""What the config tree offers, discovered from its files rather than listed by hand: the heads that leaderboard
sweeps and the demo train, and the experiments (one file per method, plus ``<method>_<dataset>`` shorthands).

Discovery reads the config search path of the running Hydra application (so a head config added through
``hydra.searchpath`` or dropped into ``conf/model/`` is found), or ``conf/`` when no Hydra app is running.
A head config opts out of the sweeps with ``leaderboard: false`` at its top level (e.g. a head that needs another
training mode). Sweep configs name the list as ``model: ${vadmil.heads:}`` (the resolver registered here).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from omegaconf import OmegaConf

HEADS_RESOLVER = "vadmil.heads"
OPT_OUT = "leaderboard"  # `leaderboard: false` in conf/model/<head>.yaml leaves a head out of the sweeps


def group_configs(group: str, conf: str | Path | None = None) -> dict[str, dict]:
    """name → the top level of each config of ``group`` (its own file, unresolved, defaults list included).
    ``conf``: a config dir to read instead of the running application's search path."""
    if conf is None and GlobalHydra.instance().is_initialized():
        found: dict[str, dict] = {}
        for source in GlobalHydra.instance().config_loader().get_sources():
            if not source.is_group(group):
                continue
            for name in source.list(group, ObjectType.CONFIG):
                if name not in found:  # the first source on the search path wins, as in Hydra
                    loaded = source.load_config(f"{group}/{name}").config
                    found[name] = OmegaConf.to_container(loaded, resolve=False)
        return dict(sorted(found.items()))
    if conf is None:
        from vadmil.commands.base import config_dir

        conf = config_dir()
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted((Path(conf) / group).glob("*.yaml"))}


def sweep_heads(conf: str | Path | None = None) -> list[str]:
    """Every head config (``conf/model/*.yaml``) except those with ``leaderboard: false``, sorted."""
    return [name for name, cfg in group_configs("model", conf).items() if cfg.get(OPT_OUT, True) is not False]


def _defaults(cfg: dict) -> list:
    return [d for d in cfg.get("defaults", []) if d != "_self_"]


def experiment_shorthands(conf: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """``<method>_<dataset>`` experiment → (method, dataset): the experiments whose defaults list is another
    experiment followed by ``override /dataset: <dataset>``."""
    experiments = group_configs("experiment", conf)
    out = {}
    for name, cfg in experiments.items():
        first, *rest = _defaults(cfg) or [None]
        if isinstance(first, str) and first in experiments:
            datasets = [
                d["override /dataset"] for d in rest if isinstance(d, dict) and "override /dataset" in d
            ]
            out[name] = (first, datasets[0] if datasets else None)
    return out


def experiment_methods(conf: str | Path | None = None) -> list[str]:
    """The experiments that hold a method's settings (every experiment that is not a shorthand)."""
    shorthands = experiment_shorthands(conf)
    return [name for name in group_configs("experiment", conf) if name not in shorthands]


def register_resolvers() -> None:
    """``${vadmil.heads:}``: the comma-separated sweep heads, for ``hydra.sweeper.params.model``."""
    if not OmegaConf.has_resolver(HEADS_RESOLVER):
        OmegaConf.register_new_resolver(HEADS_RESOLVER, lambda: ",".join(sweep_heads()))

"""Every shipped config composes, and every `_target_` in it names a real callable accepting its arguments."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from vadmil.commands.base import config_dir

CONF = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def targets(node, where: str = ""):
    """(key path, node) of every mapping with a _target_."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield where, node
        for key in node:
            yield from targets(node._get_node(key), f"{where}.{key}")


def check_targets(cfg: DictConfig) -> int:
    found = 0
    for where, node in targets(cfg):
        fn = get_method(node._target_)
        params = inspect.signature(fn).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in node:
            if not key.startswith("_") and not takes_kwargs:
                assert key in params, f"{where}: {node._target_} takes no argument '{key}'"
        found += 1
    return found


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_configs_compose_with_valid_targets(dataset):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"dataset={dataset}"], return_hydra_config=False)
    assert check_targets(cfg.dataset) >= 2  # train and test annotation loaders
    assert cfg.dataset.primary_metric in ("frame_auc", "frame_ap_trapz", "frame_ap_step")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs_compose_with_valid_targets(experiment):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"])
    assert check_targets(cfg.model) >= 3  # head, objective (+ its losses), optimizer


@pytest.mark.parametrize("fmt", options("format"))
def test_import_format_configs_name_real_readers(fmt):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("import", [f"format={fmt}", "input=x", "output=y.h5"])
    assert check_targets(cfg.format) == 1
    assert OmegaConf.select(cfg, "format.extra_streams") is not None


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options_name_real_classes(group):
    for option in options(group):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", [f"{group}={option}"])
        assert check_targets(cfg[group]) >= 1, f"conf/{group}/{option}.yaml"

"""Configs without matrices: heads and experiments are discovered from conf/, a head config dropped into the config
tree joins the leaderboard and demo sweeps with no other edit, and a `<method>_<dataset>` shorthand is exactly
`experiment=<method> dataset=<dataset>` plus only what it states itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vadmil.commands.base import config_dir
from vadmil.commands.catalog import (
    experiment_methods,
    experiment_shorthands,
    group_configs,
    sweep_heads,
)

CONF = Path(config_dir())
SHORTHANDS = experiment_shorthands()
# Keys every composition carries that depend on nothing an experiment sets.
VOLATILE = ("run_dir",)


def _compose(overrides: list[str]):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides)


def _plain(cfg) -> dict:
    out = OmegaConf.to_container(cfg, resolve=False)
    for key in VOLATILE:
        out.pop(key, None)
    return out


def test_sweep_heads_are_the_model_configs_that_do_not_opt_out():
    models = group_configs("model")
    assert sweep_heads() == sorted(n for n, c in models.items() if c.get("leaderboard", True) is not False)
    assert sweep_heads() and set(sweep_heads()) <= {p.stem for p in (CONF / "model").glob("*.yaml")}


@pytest.fixture()
def conf_with_new_heads(tmp_path) -> Path:
    """A copy of conf/ with two new head configs: one for the sweeps, one that opts out."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    fcn = yaml.safe_load((CONF / "model" / "fcn.yaml").read_text())
    (conf / "model" / "fcn_wide.yaml").write_text(yaml.safe_dump({**fcn, "name": "fcn_wide"}))
    (conf / "model" / "fcn_other.yaml").write_text(
        yaml.safe_dump({**fcn, "name": "fcn_other", "leaderboard": False})
    )
    return conf


@pytest.mark.parametrize("sweep", ["leaderboard", "leaderboard_synthetic", "demo"])
def test_a_new_head_config_joins_the_sweeps_with_no_other_edit(conf_with_new_heads, sweep):
    with initialize_config_dir(str(conf_with_new_heads), version_base="1.3"):
        cfg = compose("train", [f"sweep={sweep}"], return_hydra_config=True)
        heads = cfg.hydra.sweeper.params.model.split(",")  # resolved as Hydra's sweeper does, in the app
    assert "fcn_wide" in heads and "fcn_other" not in heads
    assert heads == sweep_heads(conf_with_new_heads)
    assert set(heads) - {"fcn_wide"} == set(sweep_heads())  # and nothing else changed


def test_the_demo_trains_the_discovered_heads(conf_with_new_heads):
    from vadmil.demo import pipeline

    assert pipeline.sweep_heads is sweep_heads  # the demo's head list is the sweeps' one
    assert "fcn_wide" in sweep_heads(conf_with_new_heads)


def test_every_experiment_is_a_method_or_a_shorthand_of_one():
    methods = experiment_methods()
    assert methods and set(methods).isdisjoint(SHORTHANDS)
    assert set(methods) | set(SHORTHANDS) == {p.stem for p in (CONF / "experiment").glob("*.yaml")}
    for name, (method, dataset) in SHORTHANDS.items():
        assert method in methods and dataset, name
        assert name.startswith(f"{method}_"), name  # the name says which method it is


@pytest.mark.parametrize("name", sorted(SHORTHANDS))
def test_a_shorthand_is_its_method_on_its_dataset_plus_only_what_it_states(name):
    method, dataset = SHORTHANDS[name]
    shorthand, combined = (
        _plain(_compose([f"experiment={name}"])),
        _plain(_compose([f"experiment={method}", f"dataset={dataset}"])),
    )
    shorthand.pop("experiment", None), combined.pop("experiment", None)
    own = {k for k in yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text()) if k != "defaults"}
    for key in set(shorthand) | set(combined):
        if key not in own:
            assert shorthand.get(key) == combined.get(key), f"{name}: {key} differs from experiment={method}"
    for key in own:  # a value it states must differ from the method's: no copies
        assert shorthand[key] != combined.get(key), f"{name} repeats {key} of experiment={method}"


@pytest.mark.parametrize("method", experiment_methods())
def test_methods_leave_the_dataset_to_the_command_line(method):
    defaults = group_configs("experiment")[method].get("defaults", [])
    assert not any(isinstance(d, dict) and "override /dataset" in d for d in defaults), method
    for dataset in sorted(p.stem for p in (CONF / "dataset").glob("*.yaml")):
        assert _compose([f"experiment={method}", f"dataset={dataset}"]).dataset.name


def test_a_sweeps_head_settings_apply_only_in_that_sweep():
    """conf/sweep_head/<sweep>_<head>.yaml (here: the demo's smaller RTFM) changes that head in that sweep only."""
    shrunk = yaml.safe_load((CONF / "sweep_head" / "demo_rtfm.yaml").read_text())["model"]["head"]["channels"]
    paper = yaml.safe_load((CONF / "model" / "head" / "rtfm.yaml").read_text())["channels"]
    assert shrunk < paper
    assert _compose(["sweep=demo", "model=rtfm"]).model.head.channels == shrunk
    assert _compose(["model=rtfm"]).model.head.channels == paper
    assert _compose(["sweep=leaderboard", "model=rtfm"]).model.head.channels == paper
    assert _compose(["experiment=rtfm", "dataset=ucf_crime"]).model.head.channels == paper
    # every sweep_head file names an existing sweep and head
    for path in (CONF / "sweep_head").glob("*.yaml"):
        assert any(
            path.stem == f"{sweep}_{head}"
            for sweep in group_configs("sweep")
            for head in group_configs("model")
        ), f"{path.name}: no sweep_<head> pair of that name"
    fcn = OmegaConf.to_container(_compose(["model=fcn"]).model)
    assert OmegaConf.to_container(_compose(["sweep=demo", "model=fcn"]).model) == fcn  # no file: unchanged

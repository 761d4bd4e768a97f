"""No code from data (vadmil/trust.py): a config read back from a run dir, checkpoint or store builds only
allow-listed targets; a crafted checkpoint or config is one line and writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.inprocess import run_inprocess
from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError
from vadmil.rundir import RunDir
from vadmil.training.module import MILModule
from vadmil.training.train import resolve_config
from vadmil.trust import check_target, targets, trusted_config

CONF = Path(config_dir())


def shipped_targets() -> list[tuple[str, str, str]]:
    """(file, absolute key path, target) of every _target_ in conf/ (Hydra's own launcher configs aside): a
    group file's keys sit under its group (conf/model/head/fcn.yaml → model.head), unless it is _global_."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if rel.parts[0] == "hydra":
            continue
        text = path.read_text()
        group = "" if "@package _global_" in text or len(rel.parts) == 1 else ".".join(rel.parts[:-1])
        for key, target in targets(yaml.safe_load(text) or {}, group):
            if not key.startswith("hydra"):
                found.append((str(rel), key, target))
    return found


def test_every_target_of_the_shipped_configs_is_allowed():
    found = shipped_targets()
    assert len(found) > 40  # heads, losses, optimisers, backbones, loaders, readers, the synthetic generator
    for rel, key, target in found:
        check_target(key, target, rel)
    assert ("dataset/synthetic.yaml", "dataset.prepare", "vadmil.data.synthetic.ensure_synthetic") in found


@pytest.mark.parametrize(
    "key, target",
    [
        ("dataset.annotations.test", "numpy.savetxt"),
        ("model.objective", "os.system"),
        ("model.head", "vadmil.rundir.os.system"),  # walks out of an allowed module through an attribute
        ("model.head", "vadmil.heads.fcn.torch.save"),
        ("model.optimizer", "torch.nn.modules.module.torch.save"),
        ("model.head", "vadmil.rundir.write_json"),  # vadmil, but not a model part: writes files
        ("dataset.annotations.test", "vadmil.data.synthetic.ensure_synthetic"),  # a writer outside prepare
        ("model.head", "vadmil.losses.objective.Objective.__init__"),
        ("model.head", "torch.nn"),  # a module is not a callable target
        ("model.head", "vadmil.heads.fcn.NoSuchHead"),
        ("model.head", 42),
    ],
)
def test_targets_outside_the_allow_list_are_refused(key, target):
    with pytest.raises(VadmilError, match=f"refusing to build {key} \\(_target_: {target}\\)"):
        check_target(key, target, "run/config.yaml")


def test_targets_are_found_at_any_depth_and_after_interpolation():
    nested = {
        "model": {
            "scheduler": {
                "_target_": "torch.optim.lr_scheduler.LambdaLR",
                "_partial_": True,
                "lr_lambda": {"_target_": "builtins.eval", "_args_": [["x", {"_target_": "os.system"}]]},
            }
        }
    }
    assert [k for k, _ in targets(nested)] == [
        "model.scheduler", "model.scheduler.lr_lambda", "model.scheduler.lr_lambda._args_[0][1]",
    ]  # fmt: skip
    with pytest.raises(VadmilError, match=r"model.scheduler.lr_lambda \(_target_: builtins.eval\)"):
        trusted_config(nested, "ckpt")
    hidden = {"evil": "numpy.savetxt", "model": {"head": {"_target_": "${evil}"}}}
    with pytest.raises(VadmilError, match=r"model.head \(_target_: numpy.savetxt\)"):
        trusted_config(hidden, "ckpt")
    with pytest.raises(VadmilError, match="cannot read its config"):
        trusted_config({"model": {"head": "${nowhere}"}}, "ckpt")
    with pytest.raises(VadmilError, match="not a mapping"):
        trusted_config("- a list", "ckpt")
    ok = trusted_config({"a": 1, "b": "${a}", "head": {"_target_": "vadmil.heads.fcn.FCNHead"}}, "ckpt")
    assert ok.b == 1


# ---- end to end: crafted run dirs and checkpoints through `vadmil eval` and `vadmil score` ----------------------
def make_run(root: Path, store: Path, manifest: Path) -> RunDir:
    """A finished run dir as `vadmil train` lays it out (an untrained FCN; no fit needed to test loading)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        overrides = ["dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}"]
        cfg = compose("train", [*overrides, f"run_dir={root / 'run'}"])
    cfg = resolve_config(cfg)
    run = RunDir(root / "run")
    run.checkpoints.mkdir(parents=True)
    OmegaConf.save(cfg, run.config)
    module = MILModule.from_config(cfg, 16)
    info = {"config": OmegaConf.to_container(cfg), "features": {"feature_dim": 16}, "val_video_auc": 0.5}
    torch.save(
        {"epoch": 0, "global_step": 1, "state_dict": module.state_dict(), "vadmil": info}, run.checkpoint
    )
    (run.metrics).write_text(json.dumps({"status": "complete", "test": {}}))
    return run


def assert_refused(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("vadmil: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Marker:
    """Unpickling this creates a file: what a crafted checkpoint would do with unsafe loading."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture()
def run(tmp_path, tiny_data) -> RunDir:
    return make_run(tmp_path, *tiny_data)


def test_the_run_fixture_evaluates(run, tmp_path):
    result = run_inprocess("eval", f"run={run.path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "frame_auc" in json.loads(run.eval.read_text())["test"]


@pytest.mark.parametrize("command", ["eval", "score"])
def test_a_pickled_payload_in_the_checkpoint_never_runs(run, tmp_path, command):
    marker = tmp_path / "marker"
    ckpt = torch.load(run.checkpoint, weights_only=True)
    torch.save({**ckpt, "payload": Marker(marker)}, run.checkpoint)
    args = [f"run={run.path}"] if command == "eval" else [f"checkpoint={run.path}", f"video={tmp_path}"]
    assert_refused(run_inprocess(command, *args, cwd=tmp_path), "cannot read checkpoint", str(run.checkpoint))
    assert not marker.exists() and not run.eval.exists()


def test_a_crafted_config_yaml_is_refused_by_eval(run, tmp_path):
    marker = tmp_path / "marker.txt"
    cfg = OmegaConf.load(run.config)
    cfg.dataset.annotations.test = {"_target_": "numpy.savetxt", "fname": str(marker), "X": [1.0]}
    OmegaConf.save(cfg, run.config)
    result = run_inprocess("eval", f"run={run.path}", cwd=tmp_path)
    assert_refused(result, "config.yaml", "dataset.annotations.test", "numpy.savetxt")
    assert not marker.exists() and not run.eval.exists()


@pytest.mark.parametrize("where", ["checkpoint", "config.yaml"])
def test_a_crafted_config_is_refused_by_score(run, tmp_path, where):
    marker = tmp_path / "marker.txt"
    evil = {"_target_": "numpy.savetxt", "fname": str(marker), "X": [1.0]}
    ckpt = torch.load(run.checkpoint, weights_only=True)
    if where == "checkpoint":
        ckpt["vadmil"]["config"]["model"]["objective"] = evil
    else:  # an older checkpoint without its config: the run's config.yaml is used
        del ckpt["vadmil"]["config"]
        cfg = OmegaConf.load(run.config)
        cfg.model.objective = evil
        OmegaConf.save(cfg, run.config)
    torch.save(ckpt, run.checkpoint)
    result = run_inprocess("score", f"checkpoint={run.checkpoint}", f"video={tmp_path}", cwd=tmp_path)
    assert_refused(result, "model.objective", "numpy.savetxt")
    assert not marker.exists() and not run.scores.exists()


def test_a_crafted_extraction_config_is_refused_before_building_the_backbone(tmp_path):
    from vadmil.score.features import recorded_extraction

    text = OmegaConf.to_yaml({"decoder": {}, "backbone": {"_target_": "os.system", "_args_": ["true"]}})
    with pytest.raises(VadmilError, match=r"store s.h5: refusing to build backbone \(_target_: os.system\)"):
        recorded_extraction({"extraction_config": text}, "s.h5")


def test_checkpoints_and_run_configs_are_read_in_one_place():
    """Every torch.load is weights_only; run configs are loaded only by vadmil/rundir.py (through the gate)."""
    package = Path(__file__).resolve().parents[1] / "vadmil"
    loads, configs = {}, []
    for path in sorted(package.rglob("*.py")):
        text, rel = path.read_text(), path.relative_to(package).as_posix()
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            loads[rel] = call
        if "OmegaConf.load(" in text:
            configs.append(rel)
    assert set(loads) == {"rundir.py", "backbones/weights.py"}, loads
    assert all("weights_only=True" in call for call in loads.values()), loads
    assert configs == ["rundir.py"]


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["logger=[csv,tensorboard,mlflow,wandb]", "callbacks=[default,lr_monitor]"],
        ["experiment=rtfm_ucf_crime", "dataset.store=s.h5", "paths.annotations=a"],
        ["model=dted"],
        ["model=gcn_hlnet"],
        ["model=knn"],
        ["training=self_training"],
    ],
)
def test_a_composed_training_config_passes_the_gate(overrides):
    """What `vadmil train` saves into a run (its resolved config) is what eval and score rebuild from."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", ["run_dir=/tmp/run", *overrides])
    assert trusted_config(cfg, "composed").model.name


def test_logger_and_callback_targets_are_allowed_only_under_their_keys():
    check_target("callbacks.early_stop", "pytorch_lightning.callbacks.EarlyStopping", "run")
    check_target("logger.csv", "pytorch_lightning.loggers.CSVLogger", "run")
    for key in ("model.head", "dataset.annotations.test", "callbacksx"):
        with pytest.raises(VadmilError, match="refusing to build"):
            check_target(key, "pytorch_lightning.loggers.CSVLogger", "run")

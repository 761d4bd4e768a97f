"""The run-dir layout and loading a finished run (vadmil/rundir.py): the one owner of both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vadmil.errors import VadmilError
from vadmil.rundir import RunDir, load_checkpoint, load_finished_run, write_json
from vadmil.training.module import MILModule

D = 8
CONFIG = {
    "model": {
        "name": "fcn",
        "head": {"_target_": "vadmil.heads.fcn.FCNHead", "dropout": 0.0},
        "objective": {
            "_target_": "vadmil.losses.objective.Objective",
            "terms": {
                "ranking": {"loss": {"_target_": "vadmil.losses.ranking.MILRankingLoss"}, "weight": 1.0}
            },
        },
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        "scheduler": None,
    },
    "data": {"standardise": False},
}


def _run_dir(tmp_path: Path, embed_config: bool = True) -> tuple[RunDir, MILModule]:
    """A run dir with a checkpoint of a randomly initialised FCN module, as `vadmil train` lays it out."""
    cfg = OmegaConf.create(CONFIG)
    module = MILModule.from_config(cfg, D)
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    ckpt = {"epoch": 0, "global_step": 1, "state_dict": module.state_dict()}
    if embed_config:
        ckpt["vadmil"] = {"config": CONFIG, "features": {"feature_dim": D}, "val_video_auc": 0.5}
    torch.save(ckpt, run.checkpoint)
    return run, module


def test_the_layout_names_every_file(tmp_path):
    run = RunDir(tmp_path)
    names = [run.config, run.checkpoint, run.metrics, run.predictions, run.error, run.eval, run.scores]
    assert [p.relative_to(tmp_path).as_posix() for p in names] == [
        "config.yaml", "checkpoints/best.ckpt", "metrics.json", "predictions.npz", "error.txt", "eval.json",
        "scores",
    ]  # fmt: skip
    assert RunDir.of_checkpoint(run.checkpoint).path == tmp_path
    assert not run.is_run()
    write_json(run.metrics, {"status": "complete"})
    assert run.is_run() and not list(tmp_path.glob(".*.tmp"))


def test_an_unfinished_run_names_the_missing_file(tmp_path):
    with pytest.raises(VadmilError, match="config.yaml"):
        RunDir(tmp_path).require_finished()


def test_a_finished_run_loads_from_its_dir_or_its_checkpoint(tmp_path):
    run, module = _run_dir(tmp_path)
    for where in (run.path, run.checkpoint):
        loaded = load_finished_run(where)
        assert loaded.config.model.name == "fcn" and loaded.info["val_video_auc"] == 0.5
        restored = loaded.module(D)
        assert not restored.training
        for key, value in module.state_dict().items():
            assert torch.equal(restored.state_dict()[key], value), key


def test_the_config_falls_back_to_config_yaml_and_is_required(tmp_path):
    run, _ = _run_dir(tmp_path, embed_config=False)
    with pytest.raises(VadmilError, match="has no config"):
        load_finished_run(run.path)
    OmegaConf.save(OmegaConf.create(CONFIG), run.config)
    assert load_finished_run(run.path).config.model.name == "fcn"


def test_a_checkpoint_of_another_head_size_is_a_clear_error(tmp_path):
    run, _ = _run_dir(tmp_path)
    with pytest.raises(VadmilError, match="does not fit the fcn head"):
        load_finished_run(run.path).module(D + 1)


class Payload:  # an arbitrary object: never unpickled from a checkpoint
    pass


def test_checkpoints_are_read_as_data_only(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(VadmilError, match="cannot read checkpoint"):
        load_checkpoint(path)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(VadmilError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")


def test_the_report_and_the_layout_import_no_torch():
    code = "import sys, vadmil.rundir, vadmil.report.leaderboard; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_and_eval_import_nothing_from_the_train_command():
    code = (
        "import sys, vadmil.commands.score, vadmil.commands.eval, vadmil.rundir as r; r.restore_module; "
        "from vadmil.training.module import MILModule; "
        "print(sorted(m for m in sys.modules if m in ('vadmil.training.train', 'vadmil.commands.train')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

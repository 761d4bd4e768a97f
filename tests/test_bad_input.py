"""Every command fed its malformed inputs: exit status 2, exactly one `vadmil: error:` line naming the problem, no
traceback, the inputs (stores, manifests, run dirs) byte-for-byte unchanged, and nothing written by data.

Each case builds its inputs in a fresh ``inputs/`` folder and returns the command line; commands run in this
process (see tests/inprocess.py), so the table stays fast.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import vadmil.data.store_writer as store_writer
from tests.conftest import TINY_OVERRIDES
from tests.inprocess import run_inprocess
from tests.test_trust import Marker, make_run


@dataclass
class Inputs:
    root: Path  # everything under it is an input: hashed before and after
    store: Path
    manifest: Path
    marker: Path  # a crafted input would create this file


def _videos(inputs: Inputs) -> list[dict]:
    return json.loads(inputs.manifest.read_text())["videos"]


def _test_abnormal(inputs: Inputs) -> str:
    return next(r["video_id"] for r in _videos(inputs) if r["split"] == "test" and r["label"] == 1)


def _edit_store(inputs: Inputs, video_id: str, edit: Callable[[h5py.Group], None]) -> None:
    with h5py.File(inputs.store, "a") as f:
        edit(f["videos"][video_id])


def _replace_features(group: h5py.Group, features: np.ndarray) -> None:
    del group["features"]
    group["features"] = features


def _train(inputs: Inputs, manifest: Path | None = None) -> list[str]:
    return ["train", "dataset=manifest", f"dataset.store={inputs.store}",
            f"dataset.annotations.path={manifest or inputs.manifest}", *TINY_OVERRIDES[-3:]]  # fmt: skip


def _csv_manifest(inputs: Inputs, bad_row: str) -> Path:
    rows = [f"{r['video_id']},{r['split']},{r['label']},{';'.join(f'{s}-{e}' for s, e in r.get('intervals', []))}"
            for r in _videos(inputs)]  # fmt: skip
    path = inputs.root / "manifest.csv"
    path.write_text("video_id,split,label,intervals\n" + "\n".join(rows[:-1] + [bad_row]) + "\n")
    return path


# ---- train: manifests validated, every split checked before the fit --------------------------------------------
def train_mistyped_split(inputs):
    last = _videos(inputs)[-1]
    return _train(inputs, _csv_manifest(inputs, f"{last['video_id']},tset,0,")), ["manifest.csv:31", "'tset'"]


def train_space_separated_row(inputs):
    last = _videos(inputs)[-1]
    path = _csv_manifest(inputs, f"{last['video_id']} test 0")
    return _train(inputs, path), ["manifest.csv:31", "1 column(s) where the header has 4", "commas"]


def train_extra_column(inputs):
    last = _videos(inputs)[-1]
    return _train(inputs, _csv_manifest(inputs, f"{last['video_id']},test,0,,x,y")), ["6 column(s)"]


def train_interval_past_the_end(inputs):
    rows, video = _videos(inputs), _test_abnormal(inputs)
    with h5py.File(inputs.store, "r") as f:
        n = int(f["videos"][video].attrs["n_frames"])
    for r in rows:
        if r["video_id"] == video:
            r["intervals"] = [[n + 5, n + 50]]
    path = inputs.root / "past.json"
    path.write_text(json.dumps({"videos": rows}))
    return _train(inputs, path), [f"test video '{video}'", "starts past its last frame"]


def train_abnormal_test_video_without_interval(inputs):
    rows, video = _videos(inputs), _test_abnormal(inputs)
    for r in rows:
        if r["video_id"] == video:
            r["intervals"] = []
    path = inputs.root / "no_interval.json"
    path.write_text(json.dumps({"videos": rows}))
    return _train(inputs, path), [f"abnormal video {video} has no temporal annotation"]


def train_nan_in_a_test_video(inputs):
    video = _test_abnormal(inputs)
    _edit_store(inputs, video, lambda g: g["features"].__setitem__((0, 0, 0), np.nan))
    return _train(inputs), [video, "NaN/Inf"]


def train_test_video_of_another_crop_count(inputs):
    video = _test_abnormal(inputs)
    _edit_store(inputs, video, lambda g: _replace_features(g, g["features"][:, :1]))
    return _train(inputs), [f"test video '{video}'", "features of shape"]


def train_store_without_recipe(inputs):
    with h5py.File(inputs.store, "a") as f:
        for key in ("feature_dim", "n_crops"):
            del f.attrs[key]
    return _train(inputs), ["has a schema_version but its recipe attribute(s) feature_dim, n_crops"]


# ---- eval and score: no code from a run dir or checkpoint; damaged and unfinished runs ---------------------------
def _run(inputs):
    return make_run(inputs.root, inputs.store, inputs.manifest)


def eval_pickled_payload(inputs):
    run = _run(inputs)
    torch.save({**torch.load(run.checkpoint, weights_only=True), "x": Marker(inputs.marker)}, run.checkpoint)
    return ["eval", f"run={run.path}"], ["cannot read checkpoint"]


def eval_crafted_config(inputs):
    run = _run(inputs)
    cfg = OmegaConf.load(run.config)
    cfg.dataset.annotations.test = {"_target_": "numpy.savetxt", "fname": str(inputs.marker), "X": [1]}
    OmegaConf.save(cfg, run.config)
    return ["eval", f"run={run.path}"], ["dataset.annotations.test", "numpy.savetxt"]


def eval_unfinished_run(inputs):
    run = _run(inputs)
    run.metrics.unlink()
    return ["eval", f"run={run.path}"], ["no metrics.json", "allow_unfinished=true"]


def eval_run_is_a_file(inputs):
    return ["eval", f"run={inputs.manifest}"], ["is not a finished vadmil run"]


def eval_truncated_checkpoint(inputs):
    run = _run(inputs)
    run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:300])
    return ["eval", f"run={run.path}"], ["cannot read checkpoint", "best.ckpt"]


def eval_not_a_checkpoint(inputs):
    run = _run(inputs)
    run.checkpoint.write_text("model weights will be here\n")
    return ["eval", f"run={run.path}"], ["cannot read checkpoint"]


def eval_config_not_a_mapping(inputs):
    run = _run(inputs)
    run.config.write_text("- just\n- a list\n")
    return ["eval", f"run={run.path}"], ["config.yaml", "not a mapping"]


def eval_test_video_of_another_crop_count(inputs):
    run, video = _run(inputs), _test_abnormal(inputs)
    _edit_store(inputs, video, lambda g: _replace_features(g, g["features"][:, :1]))
    return ["eval", f"run={run.path}"], [f"test video '{video}'", "features of shape"]


def score_crafted_checkpoint_config(inputs):
    run = _run(inputs)
    ckpt = torch.load(run.checkpoint, weights_only=True)
    evil = {
        "_target_": "numpy.savetxt",
        "fname": str(inputs.marker),
        "X": [1],
    }  # (Hydra itself blocks os.system)
    ckpt["vadmil"]["config"]["model"]["objective"] = evil
    torch.save(ckpt, run.checkpoint)
    return ["score", f"checkpoint={run.checkpoint}", f"video={inputs.root}"], [
        "model.objective",
        "numpy.savetxt",
    ]


def score_checkpoint_with_an_odd_recipe(inputs):
    run = _run(inputs)
    ckpt = torch.load(run.checkpoint, weights_only=True)
    ckpt["vadmil"]["features"] = {"feature_dim": "many", "extraction_config": "decoder: {}"}
    torch.save(ckpt, run.checkpoint)
    return ["score", f"checkpoint={run.path}", f"video={inputs.root}"], ["no usable feature_dim", "'many'"]


def score_truncated_checkpoint(inputs):
    run = _run(inputs)
    run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:100])
    return ["score", f"checkpoint={run.path}", f"video={inputs.root}"], ["cannot read checkpoint"]


# ---- import, extract: ids that are not names; a full disk ---------------------------------------------------------
def _features_dir(inputs, *names: str) -> Path:
    folder = inputs.root / "npy"
    folder.mkdir()
    for name in names:
        np.save(folder / name, np.ones((4, 16), np.float32))
    return folder


def _import(folder: Path, output: Path) -> list[str]:
    return [
        "import",
        "format=npy",
        "format.backbone=x",
        f"input={folder}",
        f"output={output}",
        "progress=false",
    ]


def import_dot_dot_file(inputs):
    folder = _features_dir(inputs, "a.npy")
    np.save(folder / "..npy", np.ones((4, 16), np.float32))  # np.save would append .npy to a name without it
    return _import(folder, inputs.root.parent / "new.h5"), [
        "cannot derive a video id from the file name '..npy'"
    ]


def import_disk_full(inputs, monkeypatch):
    """Appending to a store that holds a committed video: the disk fills up, the store stays as it was."""
    folder, store = _features_dir(inputs, "a.npy"), inputs.root / "imported.h5"
    assert run_inprocess(*_import(folder, store), cwd=inputs.root.parent).returncode == 0
    np.save(folder / "b.npy", np.ones((4, 16), np.float32))
    full = type("usage", (), {"free": 100})
    monkeypatch.setattr(store_writer.shutil, "disk_usage", lambda _: full)
    return _import(folder, store), ["not enough disk space for video 'b'", "needs about", "100 B free"]


def extract_dot_dot_video(inputs):
    folder = inputs.root / "videos"
    folder.mkdir()
    (folder / "..mp4").write_bytes(b"\0" * 64)
    return [
        "extract",
        f"input={folder}",
        f"output={inputs.root.parent / 'x.h5'}",
        "backbone.random_init=true",
    ], ["cannot derive a video id from '..mp4'"]


# ---- report, gt-check ---------------------------------------------------------------------------------------------
def report_not_a_directory(inputs):
    return ["report", f"runs={inputs.manifest}", f"output={inputs.root.parent / 'out'}"], [
        "is not a directory"
    ]


def report_no_run_dirs(inputs):
    return ["report", f"runs={inputs.root}", f"output={inputs.root.parent / 'out'}"], ["no vadmil run dirs"]


def gt_check_pickled_array(inputs):
    np.save(inputs.root / "gt.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (inputs.root / "list.txt").write_text("a\n")
    args = ["gt-check", f"gt={inputs.root / 'gt.npy'}", f"list={inputs.root / 'list.txt'}", "dataset=manifest",
            f"dataset.store={inputs.store}", f"dataset.annotations.path={inputs.manifest}"]  # fmt: skip
    return args, ["cannot read released ground truth", "ValueError"]


def gt_check_npz(inputs):
    np.savez(inputs.root / "gt.npz", gt=np.zeros(10))
    (inputs.root / "list.txt").write_text("a\n")
    args = ["gt-check", f"gt={inputs.root / 'gt.npz'}", f"list={inputs.root / 'list.txt'}", "dataset=manifest",
            f"dataset.store={inputs.store}", f"dataset.annotations.path={inputs.manifest}"]  # fmt: skip
    return args, ["is an .npz archive, not one array"]


CASES = [
    train_mistyped_split, train_space_separated_row, train_extra_column, train_interval_past_the_end,
    train_abnormal_test_video_without_interval, train_nan_in_a_test_video,
    train_test_video_of_another_crop_count, train_store_without_recipe,
    eval_pickled_payload, eval_crafted_config, eval_unfinished_run, eval_run_is_a_file, eval_truncated_checkpoint,
    eval_not_a_checkpoint, eval_config_not_a_mapping, eval_test_video_of_another_crop_count,
    score_crafted_checkpoint_config, score_checkpoint_with_an_odd_recipe, score_truncated_checkpoint,
    import_dot_dot_file, import_disk_full, extract_dot_dot_video, report_not_a_directory, report_no_run_dirs,
    gt_check_pickled_array, gt_check_npz,
]  # fmt: skip


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "inputs"
    root.mkdir()
    inputs = Inputs(root, root / "tiny.h5", root / "tiny.manifest.json", tmp_path / "marker")
    shutil.copy(tiny_data[0], inputs.store)
    shutil.copy(tiny_data[1], inputs.manifest)
    params = case.__code__.co_varnames[: case.__code__.co_argcount]
    args, fragments = case(inputs, monkeypatch) if "monkeypatch" in params else case(inputs)
    before = _hashes(root)
    work = tmp_path / "work"
    work.mkdir()
    result = run_inprocess(*args, cwd=work)
    errors = [line for line in result.stderr.splitlines() if line.startswith("vadmil: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert _hashes(root) == before, "an input changed"
    assert not inputs.marker.exists(), "a crafted input ran code"
    assert not list(work.rglob("checkpoints")), "training started"

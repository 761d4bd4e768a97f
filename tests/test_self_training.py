"""Self-training (`training=self_training`): the pseudo-label rules on constructed score curves, and the whole
command on the tiny synthetic set — every rule, per-stage artefacts, further rounds, another student head, and
pseudo-labels that do not change when the test labels are poisoned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import TINY_OVERRIDES, run_vadmil
from vadmil.commands.base import config_dir
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import VideoLabel
from vadmil.errors import VadmilError
from vadmil.evaluation.evaluate import evaluate_run
from vadmil.training.pseudo_labels import (
    agreement,
    label_scores,
    make_pseudo_labels,
    snippet_truth,
    two_means,
)
from vadmil.training.self_training import read_stage_labels
from vadmil.training.train import train

CURVE = np.array([0.1, 0.2, 0.1, 0.15, 0.9, 0.8, 0.85, 0.1, 0.3, 0.2])


# ---- rules ---------------------------------------------------------------------------------------------------------
def test_threshold_rule():
    assert label_scores(CURVE, "threshold", threshold=0.5).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert label_scores(CURVE, "threshold", threshold=0.25).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 1, 0]


def test_top_fraction_rule_takes_the_ceiling_of_the_fraction():
    assert label_scores(CURVE, "top_fraction", top_fraction=0.2).tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]
    assert label_scores(CURVE, "top_fraction", top_fraction=0.25).sum() == 3  # ceil(2.5)


def test_two_means_rule_splits_at_the_gap():
    assert label_scores(CURVE, "kmeans").tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert two_means(np.array([0.0, 0.0, 1.0, 5.0, 5.1])).tolist() == [False, False, False, True, True]
    assert not two_means(np.full(4, 0.3)).any()


def test_every_abnormal_video_keeps_a_positive_and_smoothing_and_normalising_apply_first():
    flat = np.full(6, 0.1)
    assert label_scores(flat, "threshold", threshold=0.5).tolist() == [1, 0, 0, 0, 0, 0]  # min_positive=1
    assert label_scores(flat, "kmeans", min_positive=2).sum() == 2
    low = np.array([0.1, 0.1, 0.3, 0.1])
    assert label_scores(low, "threshold", threshold=0.5, normalise=True).tolist() == [0, 0, 1, 0]
    spike = np.array([0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.6, 0.6, 0.6, 0.0])
    # the moving average (3) prefers the sustained stretch over the lone spike
    assert label_scores(spike, "top_fraction", top_fraction=0.1, smooth_window=3).tolist()[7] == 1


def test_rule_values_are_checked():
    with pytest.raises(VadmilError, match="unknown training.rule"):
        label_scores(CURVE, "median")
    with pytest.raises(VadmilError, match="top_fraction"):
        label_scores(CURVE, "top_fraction", top_fraction=0.0)


def test_normal_videos_are_all_zero_and_only_training_videos_are_labelled():
    videos = {"n": VideoLabel("n", 0), "a": VideoLabel("a", 1)}
    labels = make_pseudo_labels({"n": CURVE, "a": CURVE}, videos, rule="kmeans")
    assert labels["n"].tolist() == [0] * 10 and labels["a"].sum() == 3
    with pytest.raises(VadmilError, match="not a training video"):
        make_pseudo_labels({"test_video": CURVE}, videos, rule="kmeans")


def test_agreement_with_ground_truth_snippets():
    geometry = SnippetGeometry(16, 16, "drop")
    video = VideoLabel("a", 1, intervals=((64, 111),))  # frames 64..111: snippets 4, 5, 6
    truth = snippet_truth(video, 160, 10, geometry, end_inclusive=True)
    assert truth.tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert snippet_truth(VideoLabel("b", 1), 160, 10, geometry, True) is None
    stats = agreement({"a": label_scores(CURVE, "top_fraction", top_fraction=0.2)}, {"a": truth})
    assert stats["precision"] == 1.0 and stats["recall"] == pytest.approx(2 / 3) and stats["accuracy"] == 0.9


# ---- the whole command ---------------------------------------------------------------------------------------------
def _cfg(store, manifest, *extra):
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("dataset.prepare.")]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", ["training=self_training", f"dataset.store={store}", "~dataset.prepare",
                                 f"dataset.annotations.path={manifest}", "oracle.every=0", *overrides, *extra])  # fmt: skip


def _self_train(tiny_data, run_dir, *extra, manifest=None):
    store, clean = tiny_data
    run_dir.mkdir(parents=True)
    return train(_cfg(store, manifest or clean, *extra), run_dir)


@pytest.mark.parametrize("rule", ["threshold", "top_fraction", "kmeans"])
def test_each_rule_runs_every_stage_and_keeps_its_artefacts(tiny_data, tmp_path, rule):
    metrics = _self_train(tiny_data, tmp_path / "run", f"training.rule={rule}", "training.normalise=true")
    assert metrics["supervision"] == "weak+pseudo-labels" and metrics["final_stage"] == "2_pseudo"
    assert [s["stage"] for s in metrics["stages"]] == ["1_mil", "2_pseudo"]
    assert metrics["stages"][0]["supervision"] == "weak"
    for stage in ("1_mil", "2_pseudo"):
        for name in ("checkpoints/best.ckpt", "metrics.json", "predictions.npz", "config.yaml"):
            assert (tmp_path / "run" / "stages" / stage / name).is_file(), (stage, name)
    labels = read_stage_labels(tmp_path / "run" / "stages" / "2_pseudo")
    summary = json.loads((tmp_path / "run" / "stages" / "2_pseudo" / "pseudo_labels.json").read_text())
    assert summary["rule"]["rule"] == rule and summary["n_videos"] == len(labels)
    assert summary["agreement_with_ground_truth"]["n_videos"] == summary["n_abnormal_videos"] > 0
    assert all(set(np.unique(y)) <= {0.0, 1.0} for y in labels.values())
    # the run dir's own checkpoint, config and predictions are the final stage's: `vadmil eval` reproduces it
    _assert_same_test_metrics(evaluate_run(tmp_path / "run")["test"], metrics["test"])


def test_poisoned_test_labels_leave_the_pseudo_labels_unchanged(tiny_data, tmp_path):
    store, manifest = tiny_data
    rows = json.loads(manifest.read_text())["videos"]
    for row in rows:  # every test label flipped, new intervals for the now-abnormal ones
        if row["split"] == "test":
            row["label"] = 1 - row["label"]
            row["intervals"] = [[0, 40]] if row["label"] else []
    poisoned = tmp_path / "poisoned.json"
    poisoned.write_text(json.dumps({"videos": rows}))
    clean = _self_train(tiny_data, tmp_path / "clean")
    dirty = _self_train(tiny_data, tmp_path / "dirty", manifest=poisoned)
    assert clean["test"] != dirty["test"]  # the poison reached the test metrics ...
    a, b = (read_stage_labels(tmp_path / r / "stages" / "2_pseudo") for r in ("clean", "dirty"))
    assert a.keys() == b.keys()
    for v in a:  # ... and not the pseudo-labels
        assert np.array_equal(a[v], b[v]), v
    test_ids = {r["video_id"] for r in rows if r["split"] == "test"}
    assert not set(a) & test_ids


def test_further_rounds_and_another_student_head(tiny_data, tmp_path):
    metrics = _self_train(tiny_data, tmp_path / "run", "training.rounds=2", "training.student=gcn",
                          "training.init_from_previous=false", "training.student_steps=6")  # fmt: skip
    assert [s["stage"] for s in metrics["stages"]] == ["1_mil", "2_pseudo", "3_pseudo"]
    assert metrics["head"] == "fcn>gcn" and metrics["stages"][2]["head"] == "gcn"
    third = json.loads((tmp_path / "run" / "stages" / "3_pseudo" / "pseudo_labels.json").read_text())
    assert third["teacher"] == "2_pseudo"
    _assert_same_test_metrics(evaluate_run(tmp_path / "run")["test"], metrics["test"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.student=gcn"], "init_from_previous"),
        (["training.student=knn", "training.init_from_previous=false"], "unsupervised head"),
        (["training.rule=median"], "unknown training.rule"),
        (["training.rounds=0"], "rounds"),
    ],
)
def test_bad_settings_fail_before_training(tiny_data, tmp_path, overrides, message):
    with pytest.raises(VadmilError, match=message):
        _self_train(tiny_data, tmp_path / "run", *overrides)
    assert not (tmp_path / "run" / "stages").exists()


def test_the_command_line(tmp_path):
    result = run_vadmil(
        "train", "model=fcn", "training=self_training", "oracle.every=0", *TINY_OVERRIDES, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_path,) = [p for p in (tmp_path / "runs").rglob("metrics.json") if "stages" not in p.parts]
    assert json.loads(metrics_path.read_text())["supervision"] == "weak+pseudo-labels"
    assert "self-training done" in result.stdout


def test_self_training_learns_the_planted_anomalies(tmp_path):
    """On the small planted set of tests/test_train_heads.py, the final (pseudo-label) stage beats chance clearly."""
    from tests.test_train_heads import LEARNED_AUC, SMALL

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", ["training=self_training", "training.rule=kmeans", f"paths.features={tmp_path}",
                                "oracle.every=0", "trainer.max_steps=120", "data.batch_size=16",
                                "data.batches_per_epoch=20", "trainer.enable_progress_bar=false",
                                *[f"dataset.prepare.{k}={v}" for k, v in SMALL.items()]])  # fmt: skip
    (tmp_path / "run").mkdir()
    metrics = train(cfg, tmp_path / "run")
    assert metrics["test"]["frame_auc"] >= LEARNED_AUC, metrics["stages"]
    agreement = metrics["stages"][1]["pseudo_labels"]["agreement_with_ground_truth"]
    assert agreement["f1"] > 0.5, agreement


def _assert_same_test_metrics(got: dict, expected: dict) -> None:
    """``pytest.approx`` over the flat metrics, and over ``frame_auc_by_category`` (a nested mapping) apart."""
    got, expected = dict(got), dict(expected)
    key = "frame_auc_by_category"
    assert got.pop(key, None) == pytest.approx(expected.pop(key, None))
    assert got == pytest.approx(expected)

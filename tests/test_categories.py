"""frame_auc_by_category (vadmil/evaluation/categories.py) against a hand computation, its place in metrics.json,
and its table and CSV columns in the leaderboard (vadmil/report/categories.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TINY_OVERRIDES, run_vadmil
from tests.test_report import make_run, read_csv
from vadmil.data.labels import VideoLabel
from vadmil.evaluation.categories import frame_auc_by_category
from vadmil.report import write_report


def _videos():
    """Two categories, two normal videos; frame scores chosen so every AUC is a small fraction by hand."""
    frames = {
        "a1": (np.array([0.9, 0.2, 0.6], np.float32), np.array([1, 0, 1], np.uint8)),  # category A
        "b1": (np.array([0.3, 0.8], np.float32), np.array([1, 0], np.uint8)),  # category B
        "n1": (np.array([0.4, 0.1], np.float32), np.zeros(2, np.uint8)),
        "n2": (np.array([0.7], np.float32), np.zeros(1, np.uint8)),
    }
    videos = {
        "a1": VideoLabel("a1", 1, ((0, 0), (2, 2)), category="A"),
        "b1": VideoLabel("b1", 1, ((0, 0),), category="B"),
        "n1": VideoLabel("n1", 0, category="Normal"),
        "n2": VideoLabel("n2", 0, category="Normal"),
    }
    return frames, videos


def _auc_by_hand(pos, neg):
    """P(score of a positive > score of a negative) + ½ P(tie), over all pairs."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_each_category_against_a_hand_computation():
    frames, videos = _videos()
    got = frame_auc_by_category(frames, videos)
    assert list(got) == ["A", "B"]  # categories of abnormal videos only: "Normal" is no key
    # A: positives 0.9, 0.6; negatives: a1's 0.2 and every normal frame 0.4, 0.1, 0.7
    assert got["A"] == pytest.approx(_auc_by_hand([0.9, 0.6], [0.2, 0.4, 0.1, 0.7]))  # 4 + 3 wins of 8
    assert got["A"] == pytest.approx(0.875)
    # B: positive 0.3; negatives b1's 0.8 and the normal frames (never A's frames)
    assert got["B"] == pytest.approx(_auc_by_hand([0.3], [0.8, 0.4, 0.1, 0.7]))  # 1/4
    assert got["B"] == pytest.approx(0.25)


def test_no_categories_no_entries_and_undefined_is_nan():
    frames, videos = _videos()
    plain = {v: VideoLabel(v, x.label, x.intervals) for v, x in videos.items()}
    assert frame_auc_by_category(frames, plain) == {}
    no_normal = {v: frames[v] for v in ("a1", "b1")}
    got = frame_auc_by_category(no_normal, videos)
    assert got["A"] == pytest.approx(1.0)  # a1's own normal frame is the only negative: 2 wins of 2
    only_b = {"b1": (np.array([0.3], np.float32), np.array([1], np.uint8))}
    assert np.isnan(frame_auc_by_category(only_b, videos)["B"])  # no negative frame at all


def test_training_writes_it_into_metrics_json_for_a_data_set_with_categories(tmp_path):
    result = run_vadmil("train", "model=fcn", *TINY_OVERRIDES, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (metrics_file,) = (tmp_path / "runs").rglob("metrics.json")
    metrics = json.loads(metrics_file.read_text())
    by_category = metrics["test"]["frame_auc_by_category"]
    assert set(by_category) <= {"additive", "constant_norm", "lower_norm"} and by_category
    assert all(0.0 <= v <= 1.0 for v in by_category.values())


def test_leaderboard_gets_a_category_table_and_appended_csv_columns(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate(((0.9, 0.5), (0.8, 0.7))):
        run = make_run(root, f"{seed}_rtfm", head="rtfm", seed=seed, objective="rtfm")
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["test"]["frame_auc_by_category"] = {"Arson": a, "Abuse": b}
        (run / "metrics.json").write_text(json.dumps(metrics))
    make_run(root, "2_fcn", head="fcn")  # a run without categories: empty cells, no crash
    result = write_report([root], tmp_path / "report")
    md = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "### Frame AUC by anomaly category" in md
    assert "| frame AUC: Abuse | frame AUC: Arson |" in md
    assert "0.8500 ± 0.0707" in md  # Arson: mean of 0.9 and 0.8, sample std
    html = (tmp_path / "report" / "leaderboard.html").read_text()
    assert "Frame AUC by anomaly category" in html and "frame AUC: Arson" in html
    rows = {r["head"]: r for r in read_csv(tmp_path / "report" / "leaderboard.csv")}
    header = list(rows["rtfm"])
    assert header[-6:] == [
        f"frame_auc_category_{c}_{s}" for c in ("Abuse", "Arson") for s in ("mean", "std", "n")
    ]
    assert float(rows["rtfm"]["frame_auc_category_Abuse_mean"]) == pytest.approx(0.6)
    assert (
        rows["fcn"]["frame_auc_category_Abuse_mean"] == ""
        and rows["fcn"]["frame_auc_category_Abuse_n"] == "0"
    )
    runs = read_csv(tmp_path / "report" / "runs.csv")
    assert list(runs[0])[-2:] == ["frame_auc_category_Abuse", "frame_auc_category_Arson"]
    assert result["n_runs"] == 3


def test_a_report_without_categories_is_unchanged(tmp_path):
    make_run(tmp_path / "runs", "0_fcn")
    write_report([tmp_path / "runs"], tmp_path / "report")
    assert "category" not in (tmp_path / "report" / "leaderboard.md").read_text()
    assert not any("category" in h for h in read_csv(tmp_path / "report" / "leaderboard.csv")[0])

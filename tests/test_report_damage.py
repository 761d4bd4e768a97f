"""`vadmil report` with damaged run dirs (listed as failed, with the reason, while the rest is reported), NaN
metrics counted per column, and names that would be markup shown literally."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.test_report import make_run, read_csv
from vadmil.report import write_report
from vadmil.report.tables import md


def _damage(run, how: str) -> str:
    """Damage one file of a complete run; returns the reason the report should give."""
    metrics, predictions = run / "metrics.json", run / "predictions.npz"
    if how == "truncated_predictions":
        predictions.write_bytes(predictions.read_bytes()[:200])
        return "unreadable predictions.npz (BadZipFile"
    if how == "corrupt_predictions":  # a flipped byte inside a member: its checksum fails
        data = bytearray(predictions.read_bytes())
        data[120] ^= 0xFF
        predictions.write_bytes(bytes(data))
        return "predictions.npz"
    if how == "metrics_list":
        metrics.write_text("[1, 2]")
        return "metrics.json holds a JSON list, not an object"
    if how == "metrics_test_string":
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test": "0.9"}))
        return "metrics.json: 'test' is a JSON str, not an object"
    if how == "metrics_not_json":
        metrics.write_bytes(b"\xff\xfe{")
        return "unreadable metrics.json"
    raise ValueError(how)


def test_damaged_runs_are_listed_as_failed_and_the_rest_is_reported(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(2):
        make_run(root, f"{seed}_fcn", head="fcn", seed=seed, auc=0.8 + seed / 100)
    reasons = {}
    for i, how in enumerate(
        [
            "truncated_predictions",
            "corrupt_predictions",
            "metrics_list",
            "metrics_test_string",
            "metrics_not_json",
        ]
    ):
        reasons[f"sweep/{how}"] = _damage(make_run(root, how, head="rtfm", seed=i), how)
    result = write_report([root], tmp_path / "out")
    groups = {g.head: g for s in result["sections"] for g in s.groups}
    assert result["n_runs"] == 7 and len(groups["fcn"].runs) == 2
    assert not groups["rtfm"].runs and len(groups["rtfm"].incomplete) == 5  # shown as "0 (+5 failed)"
    failed = {r["run"]: r for r in read_csv(tmp_path / "out" / "runs.csv") if r["status"] == "failed"}
    assert set(failed) == set(reasons)
    for name, reason in reasons.items():
        assert reason in failed[name]["error"], (name, failed[name]["error"])
    page = (tmp_path / "out" / "leaderboard.md").read_text()
    assert all(md(name) in page for name in reasons)


def test_nan_metrics_are_counted_per_column(tmp_path):
    root = tmp_path / "sweep"
    for seed, auc in enumerate((0.80, 0.84, math.nan)):
        run = make_run(root, f"{seed}_fcn", head="fcn", seed=seed, auc=0.5)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["test"]["frame_auc"] = auc  # json writes NaN for a NaN
        (run / "metrics.json").write_text(json.dumps(metrics))
    write_report([root], tmp_path / "out")
    (row,) = read_csv(tmp_path / "out" / "leaderboard.csv")
    assert row["n_runs"] == "3" and row["test_frame_auc_n"] == "2" and row["test_far_n"] == "3"
    assert float(row["test_frame_auc_mean"]) == pytest.approx(0.82)
    table = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "0.8200 ± 0.0283 (n=2 of 3)" in table and "0.0500 ± 0.0000 |" in table


def test_names_that_are_markup_are_shown_literally(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "<img src=x onerror=alert(1)>", head="fcn", dataset="<b>ucf</b>", status="failed")
    make_run(root, "ok", head="fcn", dataset="<b>ucf</b>")
    write_report([root], tmp_path / "out")
    page = (tmp_path / "out" / "leaderboard.md").read_text()
    assert not re.search(r"(?<!\\)[<>]", page)  # every angle bracket escaped: no raw HTML
    assert "\\<img src=x onerror=alert(1)\\>" in page and "## \\<b\\>ucf\\</b\\> — " in page
    html = (tmp_path / "out" / "leaderboard.html").read_text()
    assert "<img src=x" not in html and "&lt;b&gt;ucf" in html


@pytest.mark.parametrize(
    "path, value",
    [
        ("features.store", {"a": 1}),
        ("features", None),
        ("eval_protocol", {}),
        ("oracle_test.epoch", "x"),
        ("seed", [0]),
        ("test.frame_auc", "0.9"),
        ("primary_metric", None),
    ],
)
def test_odd_values_in_metrics_never_break_the_report(tmp_path, path, value):
    root = tmp_path / "sweep"
    make_run(root, "0_ok", seed=0)
    run = make_run(root, "1_odd", seed=1)
    (run / "config.yaml").write_bytes(b"\xff\xfe\x00binary")  # a config that is not text: ignored
    metrics = json.loads((run / "metrics.json").read_text())
    *parents, key = path.split(".")
    node = metrics
    for parent in parents:
        node = node[parent]
    node[key] = value
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = write_report([root], tmp_path / "out")
    assert result["n_runs"] == 2

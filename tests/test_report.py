"""`vadmil report` on constructed run dirs: grouping, mean ± std, ranking, failed runs, HTML, determinism."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import TINY_OVERRIDES, run_vadmil
from vadmil.report import write_report
from vadmil.report.aggregate import Stat
from vadmil.report.curves import intervals, pick_videos, pr_curve, roc_curve
from vadmil.report.runs import collect_runs
from vadmil.report.tables import fmt

RECIPE = {
    "backbone": "i3d_r50", "feature_dim": 2048, "n_crops": 10, "crop_order": "[]", "snippet_len": 16,
    "snippet_stride": 16, "tail_policy": "loop", "frame_size": "224", "normalisation": "hub",
    "weights_sha256": "abc", "feature_dtype": "float32", "pooled": False, "extra_streams": "{}",
}  # fmt: skip


def make_run(root: Path, name: str, *, head="fcn", seed=0, dataset="ucf_crime", auc=0.8, ap=0.3,
             status="complete", feature_dim=2048, settings=None, store="/data/ucf_i3d.h5",
             primary="frame_auc", frame_predictions=True, objective="sultani") -> Path:  # fmt: skip
    """A run dir as `vadmil train` writes it (config, Hydra files, metrics.json, predictions.npz)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    settings = dict(settings or {})
    config = {
        "seed": seed,
        "dataset": {"name": dataset, "store": store, "primary_metric": primary},
        "model": {"name": head, "head": {"_target_": f"heads.{head}"}, "objective": {"_target_": objective},
                  "optimizer": {"lr": settings.get("model.optimizer.lr", 0.01)}},
        "data": {"batch_size": 60, "sample_seed": seed},
        "trainer": {"max_steps": 100, "enable_progress_bar": False},
        "eval": {"end_inclusive": True, "frame_span": "video", "threshold": 0.5},
    }  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"model": head, "model/objective": objective, "dataset": dataset}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    overrides = [f"model={head}", f"seed={seed}", "trainer.enable_progress_bar=false"]
    overrides += [f"{k}={v}" for k, v in settings.items()]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status == "failed":
        (run / "error.txt").write_text("the store has no video 'x'; re-extract it\n")
    if status != "complete":
        return run
    rng = np.random.default_rng(seed + 7 * len(head))
    arrays = {}
    for i, label in enumerate((1, 1, 0, 0)):
        n = 50 + 10 * i
        labels = np.zeros(n, np.uint8)
        if label:
            labels[10:30] = 1
        scores = np.clip(0.3 * labels + rng.random(n) * 0.7, 0, 1).astype(np.float32)
        video = f"{'abnormal' if label else 'normal'}_{i}"
        arrays[f"snippet_scores/{video}"] = scores[::16]
        if frame_predictions:
            arrays[f"frame_scores/{video}"], arrays[f"frame_labels/{video}"] = scores, labels
    np.savez_compressed(run / "predictions.npz", **arrays)
    metrics = {
        "status": "complete", "dataset": dataset, "head": head, "seed": seed,
        "test": {"frame_auc": auc, "frame_ap_step": ap + 0.01, "frame_ap_trapz": ap, "frame_auc_abnormal": auc - 0.1,
                 "far": 0.05, "n_videos": 4, "n_abnormal_videos": 2, "n_frames": 230},
        "validation": {"video_auc": 0.9}, "selected_epoch": 3, "fit_seconds": 10.0 + seed,
        "validation_seconds": 1.0, "train_seconds": 8.0 + seed, "test_seconds": 0.5,
        "test_frames_per_second": 460.0, "primary_metric": primary, "n_parameters": 1000,
        "eval_protocol": config["eval"], "features": {"store": store, **RECIPE, "feature_dim": feature_dim, "mean_norm": 2.5},
        "oracle_test": {"chosen_on": primary, "frame_auc": auc + 0.02, "frame_ap_trapz": ap + 0.02,
                        "frame_ap_step": ap + 0.03, "epoch": 5},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture()
def runs_dir(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for seed, auc in enumerate((0.80, 0.84)):
        make_run(root, f"{seed}_fcn", head="fcn", seed=seed, auc=auc)
    for seed, auc in enumerate((0.86, 0.88, 0.90)):
        make_run(root, f"{2 + seed}_rtfm", head="rtfm", seed=seed, auc=auc, objective="rtfm")
    make_run(root, "5_gcn", head="gcn", seed=0, auc=0.70)
    make_run(root, "6_fcn_failed", head="fcn", seed=2, status="failed")
    make_run(root, "7_rtfm_unfinished", head="rtfm", seed=3, status="unfinished", objective="rtfm")
    # Other features (C3D store): their own section, never ranked with the I3D runs.
    make_run(root, "8_fcn_c3d", head="fcn", seed=0, auc=0.99, feature_dim=4096, store="/data/ucf_c3d.h5")
    return root


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_groups_are_ranked_per_feature_set_with_mean_and_sample_std(runs_dir, tmp_path):
    result = write_report([runs_dir], tmp_path / "out")
    sections = result["sections"]
    assert [s.features for s in sections] == ["i3d_r50 2048-d × 10 crops", "i3d_r50 4096-d × 10 crops"]
    i3d = sections[0]
    assert [(g.rank, g.head, len(g.runs), len(g.incomplete)) for g in i3d.groups] == [
        (1, "rtfm", 3, 1), (2, "fcn", 2, 1), (3, "gcn", 1, 0),
    ]  # fmt: skip
    rows = read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(rows) == 4 and len({r["features_id"] for r in rows}) == 2
    rtfm = next(r for r in rows if r["head"] == "rtfm")
    assert float(rtfm["test_frame_auc_mean"]) == pytest.approx(0.88)
    assert float(rtfm["test_frame_auc_std"]) == pytest.approx(statistics.stdev([0.86, 0.88, 0.90]))
    assert rtfm["n_runs"] == "3" and rtfm["n_incomplete"] == "1" and rtfm["seeds"] == "0 1 2"
    gcn = next(r for r in rows if r["head"] == "gcn")
    assert gcn["test_frame_auc_std"] == ""  # one run: no std
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 9
    assert {r["run"]: r["status"] for r in runs}["sweep/6_fcn_failed"] == "failed"
    assert {r["run"]: r["status"] for r in runs}["sweep/7_rtfm_unfinished"] == "unfinished"


def test_markdown_lists_failed_runs_and_labels_oracle_columns(runs_dir, tmp_path):
    write_report([runs_dir], tmp_path / "out")
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert md.count("## ucf\\_crime — ") == 2  # one table per feature set; names are Markdown-escaped
    assert "frame AUC (val-selected)" in md and "frame AUC (oracle: best-on-test)" in md
    assert "| 1 | rtfm | weak | rgb | rtfm | 3 (+1 failed) | 0.8800 ± 0.0200 |" in md
    assert "| 3 | gcn | weak | rgb | sultani | 1 | 0.7000 ± – |" in md
    assert "## Runs that did not finish" in md
    assert (
        "sweep/6\\_fcn\\_failed | failed | ucf\\_crime | fcn | 2 | the store has no video 'x'; re-extract it |"
        in md
    )
    assert "sweep/7\\_rtfm\\_unfinished | unfinished |" in md


def test_report_shows_the_validation_share_of_the_fit(runs_dir, tmp_path):
    write_report([runs_dir], tmp_path / "out")
    assert "validation share of fit" in (tmp_path / "out" / "leaderboard.md").read_text()
    rtfm = next(r for r in read_csv(tmp_path / "out" / "leaderboard.csv") if r["head"] == "rtfm")
    assert float(rtfm["validation_share_mean"]) == pytest.approx(statistics.fmean([1 / 10, 1 / 11, 1 / 12]))
    shares = {r["run"]: r["validation_share"] for r in read_csv(tmp_path / "out" / "runs.csv")}
    assert float(shares["sweep/0_fcn"]) == pytest.approx(0.1) and shares["sweep/6_fcn_failed"] == ""


def test_primary_metric_orders_the_table(tmp_path):
    root = tmp_path / "xd"
    make_run(root, "a", head="fcn", dataset="xd_violence", auc=0.95, ap=0.40, primary="frame_ap_trapz")
    make_run(root, "b", head="rtfm", dataset="xd_violence", auc=0.80, ap=0.70, primary="frame_ap_trapz")
    result = write_report([root], tmp_path / "out")
    (section,) = result["sections"]
    assert section.primary == "frame_ap_trapz" and [g.head for g in section.groups] == ["rtfm", "fcn"]
    assert "AP trapz (oracle: best-on-test)" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_different_settings_are_separate_rows(tmp_path):
    root = tmp_path / "search"
    make_run(root, "a", seed=0, auc=0.8)
    make_run(root, "b", seed=1, auc=0.82)
    make_run(root, "c", seed=0, auc=0.9, settings={"model.optimizer.lr": 0.001})
    (section,) = write_report([root], tmp_path / "out")["sections"]
    assert section.show_variant
    assert [(g.variant, len(g.runs)) for g in section.groups] == [
        ("model.optimizer.lr=0.001", 1),
        ("defaults", 2),
    ]


def test_html_is_self_contained_and_report_is_deterministic(runs_dir, tmp_path):
    out = tmp_path / "out"
    write_report([runs_dir], out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    write_report([runs_dir], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    page = (out / "leaderboard.html").read_text()

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.external = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            for key, value in attrs:
                if key in ("src", "href") and value and not value.startswith("#"):
                    self.external.append((tag, key, value))

    parser = Parser()
    parser.feed(page)
    parser.close()
    assert parser.external == []
    assert not re.search(r"https?://", page)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert parser.tags.count("svg") == 2 * (2 + 4)  # 2 sections: curves + spread + 4 videos each
    assert parser.tags.count("table") == 3  # 2 sections + the runs that did not finish
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids must be unique across the inlined figures"
    assert "ground truth" in page and "Runs that did not finish" in page


def test_runs_without_frame_predictions_get_a_note_not_a_crash(tmp_path):
    root = tmp_path / "old"
    make_run(root, "a", frame_predictions=False)
    write_report([root], tmp_path / "out")
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert "have no frame predictions" in page and page.count("<svg") == 1  # the spread only


def test_collect_reads_a_single_run_dir_and_refuses_empty_dirs(runs_dir, tmp_path):
    (run,) = collect_runs([runs_dir / "0_fcn"])
    assert run.status == "complete" and run.name == "0_fcn"
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no vadmil run dirs"):
        collect_runs([tmp_path / "empty"])


def test_curves_and_formatting():
    scores = np.array([0.9, 0.8, 0.8, 0.1], np.float32)
    labels = np.array([1, 0, 1, 0], np.uint8)
    fpr, tpr = roc_curve(scores, labels)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    recall, precision = pr_curve(scores, labels)
    assert recall.tolist() == [0.5, 1.0, 1.0] and precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert intervals(np.array([0, 1, 1, 0, 1], np.uint8)) == [(1, 3), (4, 5)]
    assert fmt(Stat(0.91234, None, 1), 4) == "0.9123 ± –" and fmt(Stat(None, None, 0), 4) == "–"
    assert fmt(Stat(1000.0, 0.0, 2), 0) == "1,000"


def test_pick_videos_prefers_abnormal_and_one_normal():
    from vadmil.report.curves import Predictions

    ids = ["a0", "a1", "a2", "n0", "n1"]
    labels = {v: np.array([1 if v.startswith("a") else 0, 0], np.uint8) for v in ids}
    predictions = Predictions({v: np.zeros(2, np.float32) for v in ids}, labels)
    assert pick_videos(predictions, 3) == ["a0", "a2", "n0"]
    assert pick_videos(predictions, 2, ["n1", "zz"]) == ["n1"]


def test_report_command(runs_dir, tmp_path):
    result = run_vadmil("report", f"runs=[{runs_dir}]", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1  rtfm" in result.stdout and "2 run(s) did not finish" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "leaderboard.csv", "leaderboard.html", "leaderboard.md", "runs.csv",
    ]  # fmt: skip
    (tmp_path / "empty").mkdir()
    empty = run_vadmil("report", f"runs={tmp_path / 'empty'}", cwd=tmp_path)
    assert empty.returncode == 2 and empty.stderr.startswith("vadmil: error: report: no vadmil run dirs")
    missing = run_vadmil("report", f"runs={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_oracle_is_recorded_apart_and_leaves_training_unchanged(tmp_path):
    """Scoring the test split during training (the oracle) must not move the random stream of training."""
    losses, metrics = [], []
    for every in (0, 1):
        work = tmp_path / f"oracle{every}"
        work.mkdir()
        result = run_vadmil(
            "train", *TINY_OVERRIDES, "trainer.max_steps=40", f"oracle.every={every}",
            f"hydra.run.dir={work / 'run'}", cwd=work,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        rows = csv.DictReader(io.StringIO((work / "run" / "logs" / "metrics.csv").read_text()))
        losses.append([r["train/loss"] for r in rows if r.get("train/loss")])
        metrics.append(json.loads((work / "run" / "metrics.json").read_text()))
    assert losses[0] == losses[1] and len(losses[0]) >= 3
    assert metrics[0]["test"] == metrics[1]["test"] and "oracle_test" not in metrics[0]
    oracle = metrics[1]["oracle_test"]
    assert "leaks the test set" in oracle["label"] and oracle["chosen_on"] == "frame_auc"
    assert oracle["frame_auc"] >= metrics[1]["test"]["frame_auc"]  # the selected checkpoint is a candidate
    assert oracle["n_evaluations"] >= 2 and metrics[1]["test_frames_per_second"] > 0


def test_rows_name_the_streams_they_trained_on(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "0_fcn", head="fcn", auc=0.80)  # written before streams existed: rgb
    for seed in (0, 1):
        run = make_run(root, f"1_fcn_av{seed}", head="fcn", seed=seed, auc=0.9)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["features"].update(streams={"rgb": 2048, "audio": 128}, fusion="late")
        (run / "metrics.json").write_text(json.dumps(metrics))
    result = write_report([root], tmp_path / "out")
    assert [(g.head, g.streams, len(g.runs)) for g in result["sections"][0].groups] == [
        ("fcn", "rgb+audio (late)", 2),
        ("fcn", "rgb", 1),
    ]
    assert [r["streams"] for r in read_csv(tmp_path / "out" / "leaderboard.csv")] == [
        "rgb+audio (late)",
        "rgb",
    ]
    assert sorted(r["streams"] for r in read_csv(tmp_path / "out" / "runs.csv")) == [
        "rgb",
        *["rgb+audio (late)"] * 2,
    ]
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 1 | fcn | weak | rgb+audio (late) | sultani |" in md and "Streams: the feature streams" in md


def test_supervision_families_are_separate_rows_with_their_supervision(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "0_fcn", head="fcn", auc=0.80)  # written before the key existed: weak
    for name, supervision, auc in (("1_fcn_st", "weak+pseudo-labels", 0.85), ("2_knn", "none", 0.7)):
        run = make_run(root, name, head="fcn" if name.endswith("st") else "knn", auc=auc)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["supervision"] = supervision
        if supervision == "none":
            metrics["validation"] = {"video_auc": None, "normal_error": 0.3}
        else:
            metrics["objective"] = "self_training"
        (run / "metrics.json").write_text(json.dumps(metrics))
    result = write_report([root], tmp_path / "out")
    rows = [(g.head, g.supervision, g.objective) for g in result["sections"][0].groups]
    assert rows == [
        ("fcn", "weak+pseudo-labels", "self_training"),
        ("fcn", "weak", "sultani"),
        ("knn", "none", "sultani"),
    ]
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 3 | knn | none | rgb | sultani | 1 | 0.7000 ± – |" in md and "none = unsupervised" in md
    board = read_csv(tmp_path / "out" / "leaderboard.csv")
    assert [r["supervision"] for r in board] == ["weak+pseudo-labels", "weak", "none"]
    assert {r["supervision"] for r in read_csv(tmp_path / "out" / "runs.csv")} == {
        "weak",
        "weak+pseudo-labels",
        "none",
    }

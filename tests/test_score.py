"""`vadmil score` end to end: a checkpoint trained here on a store extracted here (X3D-XS, random init, 64 px)
scores new videos with the same recipe; streaming equals offline for the same window; bad input fails clearly."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import videos as tv
from tests.conftest import run_vadmil
from vadmil.demo.videos import DemoVideoSpec, generate_videos
from vadmil.score.windows import StreamingScorer, windowed_scores

VTEST = Path(__file__).resolve().parents[2] / "shared" / "videos" / "vtest.avi"
SPEC = DemoVideoSpec(n_train_normal=4, n_train_abnormal=4, n_test_normal=2, n_test_abnormal=2, height=64,
                     width=64, min_frames=120, max_frames=160)  # fmt: skip
RECIPE = ["backbone=x3d_xs", "backbone.random_init=true", "crop_size=64", "short_side=64", "num_workers=0",
          "progress=false"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Demo videos, their store, and an FCN and a DTED run trained on it (a few steps: the scores' values are
    not the point, their provenance is)."""
    work = tmp_path_factory.mktemp("score")
    videos, manifest = generate_videos(work / "data", SPEC, progress=False)
    store = work / "store.h5"
    r = run_vadmil("extract", f"input={videos}", f"output={store}", *RECIPE, cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_vadmil(
        "train", "-m", "model=fcn,dted", "dataset=manifest", f"dataset.store={store}",
        f"dataset.annotations.path={manifest}", "data.standardise=true", "data.batch_size=4",
        "data.val_fraction=0.25", "trainer.max_steps=6", "trainer.enable_progress_bar=false", "oracle.every=0",
        f"hydra.sweep.dir={work / 'runs'}", cwd=work, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    runs = {p.name.split("_")[2]: p for p in (work / "runs").glob("*_manifest_*_seed0")}
    return {"work": work, "videos": videos, "manifest": manifest, "store": store, **runs}


def _score(trained, *args, out: Path):
    return run_vadmil("score", f"output={out}", "progress=false", *args, cwd=trained["work"], timeout=600)


def _json(out: Path, video_id: str) -> dict:
    return json.loads((out / f"{video_id}.json").read_text())


def test_offline_scores_reproduce_the_training_features(trained, tmp_path):
    """A test video scored from its file gets the snippet scores the run computed from the store: the features
    were re-extracted with exactly the recorded recipe (and standardised with the checkpoint's statistics)."""
    video = trained["videos"] / "test_abnormal_000.mp4"
    r = _score(trained, f"video={video}", f"checkpoint={trained['fcn']}", f"annotation={trained['manifest']}", "batch_snippets=4",
               out=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = _json(tmp_path, "test_abnormal_000")
    stored = np.load(trained["fcn"] / "predictions.npz")["snippet_scores/test_abnormal_000"]
    # float32 rounding only: the run scored this video inside a padded, length-sorted test batch (another summation
    # order over standardised random-init features, whose values are large); a recipe change moves scores by >1e-2
    np.testing.assert_allclose(summary["snippet_scores"], stored, atol=1e-5)
    n_frames = summary["n_frames"]
    rows = list(csv.DictReader(open(tmp_path / "test_abnormal_000.csv")))
    assert len(rows) == n_frames == len(summary["frames"]["score"])
    assert set(rows[0]) == {"frame", "time_s", "score", "label"}  # label: the annotation was given
    assert [int(r["frame"]) for r in rows] == list(range(n_frames))
    assert float(rows[-1]["time_s"]) == pytest.approx((n_frames - 1) / summary["fps"], abs=1e-4)
    assert sum(int(r["label"]) for r in rows) > 0 and summary["ground_truth"]
    assert summary["recipe"]["weights_sha256"] == "random-init" and summary["head"] == "fcn"
    assert (tmp_path / "test_abnormal_000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for alert in summary["alerts"]:
        assert all(
            float(rows[i]["score"]) >= summary["threshold"]
            for i in (alert["start_frame"], alert["end_frame"])
        )


@pytest.mark.skipif(not VTEST.is_file(), reason=f"real test video {VTEST} is absent")
def test_vtest_scores_every_frame(trained, tmp_path):
    """The real surveillance video: 795 decoded frames -> 795 scored frames."""
    r = _score(trained, f"video={VTEST}", f"checkpoint={trained['dted']}/checkpoints/best.ckpt", out=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = _json(tmp_path, "vtest")
    assert summary["n_frames"] == 795 and len(summary["frames"]["score"]) == 795
    assert summary["n_snippets"] == 50  # 49 full 16-frame snippets + the padded tail
    assert len(list(csv.DictReader(open(tmp_path / "vtest.csv")))) == 795
    assert all(0.0 <= s <= 1.0 for s in summary["frames"]["score"])


def test_times_follow_the_stream_timestamps(trained, tmp_path):
    """A variable-rate file: time_s in the CSV and JSON, alert times and the duration are its timestamps."""
    video = tv.variable_rate(tmp_path / "vfr.mkv")
    out = tmp_path / "out"
    r = _score(trained, f"video={video}", f"checkpoint={trained['fcn']}", "threshold=0", out=out)
    assert r.returncode == 0, r.stderr[-2000:]
    expected = tv.stream_times(video)
    summary = _json(out, "vfr")
    np.testing.assert_allclose(summary["frames"]["time_s"], expected, atol=1e-4)
    rows = list(csv.DictReader(open(out / "vfr.csv")))
    np.testing.assert_allclose([float(row["time_s"]) for row in rows], expected, atol=1e-4)
    assert summary["time_source"] == "timestamps" and summary["integrity"] == "ok"
    (alert,) = summary["alerts"]  # threshold 0: every frame alerts
    assert alert["end_s"] == pytest.approx(expected[-1], abs=1e-3)
    assert summary["duration_s"] == pytest.approx(expected[-1] + np.median(np.diff(expected)), abs=1e-3)


@pytest.mark.parametrize(
    "head", ["dted", pytest.param("fcn", marks=pytest.mark.slow)]
)  # fcn: slow (dted covers it)
def test_streaming_equals_offline_with_the_same_window(trained, tmp_path, head):
    """Streamed scores (progressive decoding, one snippet at a time) equal offline windowed scores; for the
    per-snippet FCN they also equal the plain whole-video scores."""
    video = trained["videos"] / "test_abnormal_001.mp4"
    # One snippet per backbone call in both modes: batches of other sizes round the backbone's float sums
    # differently (~1e-6 in the features), which this test is not about.
    common = [f"video={video}", f"checkpoint={trained[head]}", "window=4", "batch_snippets=1"]
    stream, offline = (
        _score(trained, *common, "stream=true", out=tmp_path / "s"),
        _score(trained, *common, out=tmp_path / "o"),
    )
    assert stream.returncode == 0 and offline.returncode == 0, stream.stderr[-2000:] + offline.stderr[-2000:]
    a, b = _json(tmp_path / "s", "test_abnormal_001"), _json(tmp_path / "o", "test_abnormal_001")
    np.testing.assert_allclose(a["snippet_scores"], b["snippet_scores"], atol=2e-6)
    assert a["mode"] == "stream" and a["latency_snippets"] == 0
    lines = [ln for ln in stream.stdout.splitlines() if ln.strip().startswith("snippet")]
    assert len(lines) == a["n_snippets"]  # one printed line per snippet, as it completed
    rows = list(csv.DictReader(open(tmp_path / "s" / "test_abnormal_001.stream.csv")))
    assert [int(r["snippet"]) for r in rows] == list(range(a["n_snippets"]))
    if head == "fcn":
        full = _score(
            trained, f"video={video}", f"checkpoint={trained[head]}", "batch_snippets=1", out=tmp_path / "f"
        )
        assert full.returncode == 0, full.stderr[-2000:]
        np.testing.assert_allclose(_json(tmp_path / "f", "test_abnormal_001")["snippet_scores"], a["snippet_scores"],
                                   atol=2e-6)  # fmt: skip


@pytest.mark.parametrize("window,lookahead", [(1, 0), (3, 0), (3, 2), (None, 0), (5, 1)])
def test_streaming_scorer_matches_windowed_scores(window, lookahead):
    """A sequence-dependent score (each snippet against its window's mean) streamed equals it computed offline,
    and every score arrives exactly ``lookahead`` snippets after its snippet."""
    feats = np.random.default_rng(0).normal(size=(11, 2, 3)).astype(np.float32)

    def score(x):
        return (x - x.mean(axis=0)).sum(axis=(1, 2))

    scorer, got = StreamingScorer(score, window, lookahead), {}
    for n, f in enumerate(feats, 1):
        for i, s in scorer.push(f):
            assert i == n - 1 - lookahead
            got[i] = s
    got.update(dict(scorer.finish()))
    np.testing.assert_allclose([got[i] for i in range(len(feats))], windowed_scores(score, feats, window, lookahead),
                               rtol=1e-6, atol=1e-6)  # fmt: skip


def test_bad_inputs_fail_with_one_line(trained, tmp_path):
    run, out = trained["fcn"], tmp_path / "out"
    # an unreadable video
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    r = _score(trained, f"video={bad}", f"checkpoint={run}", out=out)
    assert r.returncode != 0 and "broken.mp4" in r.stderr and "Traceback" not in r.stderr
    # a video shorter than one snippet
    import av

    short = tmp_path / "short.mp4"
    with av.open(str(short), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 64
        for _ in range(10):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        c.mux(s.encode())
    r = _score(trained, f"video={short}", f"checkpoint={run}", out=out)
    assert r.returncode != 0 and "fewer than one 16-frame snippet" in r.stderr
    # a recipe mismatch names the field
    video = trained["videos"] / "test_normal_000.mp4"
    r = _score(trained, f"video={video}", f"checkpoint={run}", "+extract.crops=5", out=out)
    assert r.returncode != 0 and "n_crops: 1 != 5" in r.stderr and "Traceback" not in r.stderr
    r = _score(trained, f"video={video}", f"checkpoint={run}", "+extract.snippet_len=8", out=out)
    assert r.returncode != 0 and "snippet_len: 16 != 8" in r.stderr
    # a checkpoint without its config
    lone = tmp_path / "lone.ckpt"
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt.pop("vadmil")
    torch.save(ckpt, lone)
    r = _score(trained, f"video={video}", f"checkpoint={lone}", out=out)
    assert r.returncode != 0 and "has no config" in r.stderr
    r = _score(trained, f"video={video}", f"checkpoint={tmp_path / 'nowhere'}", out=out)
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert not list(out.glob("*.csv")) if out.exists() else True  # nothing half-written


def test_a_model_trained_on_synthetic_features_cannot_score_videos(trained, tmp_path, tiny_data):
    store, manifest = tiny_data
    r = run_vadmil("train", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
                   "trainer.max_steps=4", "data.batches_per_epoch=2", "data.batch_size=4", "oracle.every=0", "trainer.enable_progress_bar=false",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    r = _score(trained, f"video={trained['videos'] / 'test_normal_000.mp4'}", f"checkpoint={tmp_path / 'run'}",
               out=tmp_path / "o")  # fmt: skip
    assert r.returncode != 0 and "was not made by `vadmil extract`" in r.stderr


def test_a_folder_scores_every_video_and_reports_failures(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("test_normal_000.mp4", "test_normal_001.mp4"):
        shutil.copy(trained["videos"] / name, folder / name)
    (folder / "zz_broken.mp4").write_bytes(b"\x00" * 64)
    r = _score(trained, f"video={folder}", f"checkpoint={trained['fcn']}", "plot=false", out=tmp_path / "o")
    assert r.returncode != 0 and "1 video(s) could not be scored" in r.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "test_normal_000.csv", "test_normal_000.json", "test_normal_001.csv", "test_normal_001.json",
    ]  # fmt: skip


def test_training_that_ends_before_its_first_validation_says_so(tmp_path, tiny_data):
    # Only validation per epoch can miss: a step cadence always validates at max_steps.
    store, manifest = tiny_data
    r = run_vadmil("train", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
                   "trainer.max_steps=1", "data.batch_size=4", "oracle.every=0", "trainer.enable_progress_bar=false",
                   "trainer.val_check_interval=epoch", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert r.returncode != 0 and "before its first validation (every epoch)" in r.stderr
    assert "trainer.val_check_interval=auto" in r.stderr and "Traceback" not in r.stderr

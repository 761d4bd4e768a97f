"""The demo: its videos are deterministic and carry visible, labelled events; `vadmil demo` produces every
artefact (a small version here; the full one, with its AUC bar, is marked slow)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import decord
import numpy as np
import pytest

from tests.conftest import run_vadmil
from vadmil.demo.videos import DemoVideoSpec, generate_videos
from vadmil.errors import VadmilError

SMALL = DemoVideoSpec(n_train_normal=2, n_train_abnormal=2, n_test_normal=1, n_test_abnormal=1, height=64,
                      width=64, min_frames=120, max_frames=150, sound=True)  # fmt: skip
AUDIO_ROW = "fcn [rgb+audio (early)]"  # the demo's row on the soundtrack too (conf/demo.yaml audio_heads)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.mp4"))}


def test_demo_videos_are_deterministic_and_labelled(tmp_path):
    videos, manifest = generate_videos(tmp_path / "a", SMALL, progress=False)
    again, _ = generate_videos(tmp_path / "b", SMALL, progress=False)
    assert _digests(videos) == _digests(again)  # byte-identical files from the same spec
    other, _ = generate_videos(tmp_path / "c", replace(SMALL, seed=1), progress=False)
    assert _digests(videos) != _digests(other)
    rows = json.loads(manifest.read_text())["videos"]
    assert {(r["split"], r["label"]) for r in rows} == {("train", 0), ("train", 1), ("test", 0), ("test", 1)}
    for r in rows:
        reader = decord.VideoReader(str(videos / f"{r['video_id']}.mp4"))
        assert len(reader) == r["n_frames"] and reader.get_avg_fps() == SMALL.fps
        assert bool(r["intervals"]) == bool(r["label"])
        assert all(0 <= s <= e < r["n_frames"] for s, e in r["intervals"])


def test_events_change_the_picture(tmp_path):
    """Frames inside an event differ from the scene far more than traffic does outside events."""
    videos, manifest = generate_videos(tmp_path, SMALL, progress=False)
    row = next(r for r in json.loads(manifest.read_text())["videos"] if r["label"])
    frames = decord.VideoReader(str(videos / f"{row['video_id']}.mp4")).get_batch(
        list(range(row["n_frames"]))
    )
    frames = frames.asnumpy().astype(np.float32)
    inside = np.zeros(row["n_frames"], bool)
    for s, e in row["intervals"]:
        inside[s : e + 1] = True
    change = np.abs(frames - np.median(frames, axis=0)).mean(axis=(1, 2, 3))
    assert change[inside].mean() > 3 * change[~inside].mean()


def test_generation_is_idempotent_and_checks_its_spec(tmp_path):
    videos, _ = generate_videos(tmp_path, SMALL, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in videos.iterdir()}
    generate_videos(tmp_path, SMALL, progress=False)
    assert {p: p.stat().st_mtime_ns for p in videos.iterdir()} == stamp  # same spec: nothing rewritten
    with pytest.raises(VadmilError, match="at least one video of each class"):
        DemoVideoSpec(n_test_abnormal=0)


def _check_artefacts(out: Path, heads: list[str], self_trained: list[str]) -> dict:
    """``heads``: the main sweep's; ``self_trained``: the rows the self-training sweep adds."""
    result = json.loads((out / "demo.json").read_text())
    assert set(result["test_frame_auc"]) == set(heads) | set(self_trained)
    for path in ("data/manifest.json", "features/demo_x3d_xs.h5", "report/leaderboard.md", "report/leaderboard.html",
                 "report/leaderboard.csv", "demo.log"):  # fmt: skip
        assert (out / path).is_file(), path
    video_id = result["scored_video"]
    for ext in ("csv", "json", "png"):
        assert (out / "scores" / f"{video_id}.{ext}").is_file()
    assert len(list((out / "runs").glob("*/checkpoints/best.ckpt"))) == len(heads) * 2
    return result


def test_demo_small_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    spec = [f"videos.{k}={v}" for k, v in vars(SMALL).items()]
    r = run_vadmil("demo", f"output={out}", *spec, "heads=[fcn,dted]", "steps=8", "progress=false",
                   "extract.crop_size=64", "extract.short_side=64", cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    result = _check_artefacts(out, ["dted", "fcn"], ["fcn (weak+pseudo-labels)", AUDIO_ROW])
    assert len(list((out / "runs" / "audio").glob("*/checkpoints/best.ckpt"))) == 2
    assert len(list((out / "runs" / "self_training").glob("*/stages/2_pseudo/pseudo_labels.npz"))) == 2
    assert result["scored_with"].startswith(str(out / "runs"))
    for stage in (
        "== extract",
        "== sweep",
        "== self-training",
        "== video + audio",
        "== report",
        "== score",
        "artefacts:",
        "RANDOM-INIT",
    ):
        assert stage in r.stdout
    assert "$ vadmil extract input=" in r.stdout  # every stage shows its command


@pytest.mark.slow
def test_full_demo_every_head_clearly_above_chance(tmp_path):
    """`make demo`'s configuration: every head's mean test frame AUC >= 0.75 (measured: 0.81-0.98)."""
    out = tmp_path / "demo"
    r = run_vadmil("demo", f"output={out}", "progress=false", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    from vadmil.commands.catalog import sweep_heads

    result = _check_artefacts(out, sweep_heads(), ["fcn (weak+pseudo-labels)", AUDIO_ROW])
    assert min(result["test_frame_auc"].values()) >= 0.75, result["test_frame_auc"]
    assert result["seconds"]["total"] < 600

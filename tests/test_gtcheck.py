"""`vadmil gt-check`: a released concatenated ground-truth vector against vadmil's rebuilt ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_vadmil
from tests.test_cli import assert_user_error
from vadmil.data.annotations import load_manifest
from vadmil.data.gt_check import check_ground_truth, load_order, load_released, report_lines, verdict
from vadmil.data.labels import frame_labels
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

EXACT = "the release matches end_inclusive=true exactly"


@pytest.fixture(scope="module")
def release(tiny_data):
    """(store, test annotations, order, per-video inclusive ground truth over T x 16 frames), reversed order."""
    store_path, manifest = tiny_data
    videos = load_manifest(str(manifest), "test")
    store = FeatureStore(store_path)
    order = list(videos)[::-1]  # not the manifest's order: the walk must follow the list
    parts = {v: frame_labels(videos[v], store.n_snippets(v) * 16, end_inclusive=True) for v in order}
    yield store, videos, order, parts
    store.close()


def concat(parts, order) -> np.ndarray:
    return np.concatenate([parts[v] for v in order]).astype(np.float32)  # released vectors are float


def test_exact_release_matches_inclusive_only(release):
    store, videos, order, parts = release
    result = check_ground_truth(store, videos, order, concat(parts, order))
    s = result["summary"]
    assert (s["videos"], s["checked"], s["length_difference"], s["best"], s["exact"]) == (
        10,
        10,
        0,
        "true",
        True,
    )
    assert s["end_inclusive"]["true"] == {"videos": 0, "frames": 0}
    exclusive = {
        v: int((frame_labels(videos[v], len(p), end_inclusive=False) != p).sum()) for v, p in parts.items()
    }
    assert s["end_inclusive"]["false"]["frames"] == sum(exclusive.values()) > 0
    assert s["end_inclusive"]["false"]["videos"] == sum(n > 0 for n in exclusive.values())
    assert all(exclusive[v] == 0 for v in videos if videos[v].label == 0)  # only where intervals exist
    assert [r["video_id"] for r in result["videos"]] == order
    assert result["videos"][1]["offset"] == len(parts[order[0]])
    assert report_lines(result)[-1] == verdict(result) == EXACT


def test_flipped_frames_are_reported_for_their_video(release):
    store, videos, order, parts = release
    bad = next(v for v in order if videos[v].label == 1)
    flipped = dict(parts, **{bad: parts[bad].copy()})
    flipped[bad][[0, 3, 7]] ^= 1
    result = check_ground_truth(store, videos, order, concat(flipped, order))
    rows = {r["video_id"]: r for r in result["videos"]}
    assert rows[bad]["mismatches"]["true"] == 3
    assert all(r["mismatches"]["true"] == 0 for v, r in rows.items() if v != bad)
    assert result["summary"]["end_inclusive"]["true"] == {"videos": 1, "frames": 3}
    lines = report_lines(result)
    assert lines[-1] == "the release matches end_inclusive=true with 3 mismatching frames in 1 videos"
    assert lines[lines.index(next(x for x in lines if x.startswith("  video"))) + 1].split()[0] == bad


def test_length_differences_are_reported(release):
    store, videos, order, parts = release
    dropped = order[4]
    short = check_ground_truth(store, videos, order, concat(parts, [v for v in order if v != dropped]))
    s = short["summary"]
    assert s["length_difference"] == -len(parts[dropped]) and not s["exact"]
    assert s["checked"] < s["videos"]  # the walk stays inside the vector
    assert all("mismatches" not in r for r in short["videos"] if not r["checked"])
    assert f"{len(parts[dropped])} fewer" in "\n".join(report_lines(short))
    longer = check_ground_truth(store, videos, order, np.concatenate([concat(parts, order), np.zeros(5)]))
    assert (longer["summary"]["length_difference"], longer["summary"]["checked"]) == (5, 10)
    assert "5 more" in report_lines(longer)[1]
    # A release cut to n_frames per video: the totals show which span it used.
    n_frames = np.concatenate([parts[v][: store.n_frames(v)] for v in order])
    cut = check_ground_truth(store, videos, order, n_frames)
    assert cut["summary"]["totals"]["n_frames"] == len(n_frames) != cut["summary"]["expected_frames"]
    assert "equals the sum of n_frames" in "\n".join(report_lines(cut))


def test_missing_ids_are_named(release):
    store, videos, order, parts = release
    with pytest.raises(VadmilError, match="1 not in feature store .*ghost_video"):
        check_ground_truth(store, videos, [*order, "ghost_video"], concat(parts, order))
    train_id = next(v for v in store.ids() if v not in videos)  # in the store, not in the test annotations
    with pytest.raises(VadmilError, match=f"1 not in the test annotations: {train_id}"):
        check_ground_truth(store, videos, [train_id, *order], concat(parts, order))


def test_released_vector_and_list_files(tmp_path):
    for name, value in (("float.npy", np.array([0, 0.5, 1])), ("matrix.npy", np.zeros((2, 3)))):
        np.save(tmp_path / name, value)
        with pytest.raises(VadmilError, match=f"{name} must be a 1-D 0/1 vector"):
            load_released(tmp_path / name)
    np.save(tmp_path / "ok.npy", np.array([0.0, 1.0, 1.0]))
    assert load_released(tmp_path / "ok.npy").tolist() == [0, 1, 1]
    (tmp_path / "list.txt").write_text(
        "/f/Arson011_x264_i3d.npy\n\nRobbery102_x264.mp4\n/g/Arson011_x264_i3d.npy\n"
    )
    assert load_order(tmp_path / "list.txt") == ["Arson011_x264", "Robbery102_x264"]


def write_inputs(tmp_path, parts, order, flip: bool = False):
    gt = concat(parts, order)
    gt[0] = 1 - gt[0] if flip else gt[0]
    np.save(tmp_path / "gt.npy", gt)
    (tmp_path / "test.list").write_text("".join(f"/features/{v}_i3d.npy\n" for v in order))
    return tmp_path / "gt.npy", tmp_path / "test.list"


def test_cli_report_and_json(release, tiny_data, tmp_path):
    store, manifest = tiny_data
    gt, lst = write_inputs(tmp_path, release[3], release[2])
    args = ("gt-check", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}")
    result = run_vadmil(*args, f"gt={gt}", f"list={lst}", "output=report.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == EXACT
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["exact"] and len(report["videos"]) == 10
    assert report["summary"]["end_inclusive"]["false"]["frames"] > 0
    # strict=true: a mismatch is a failed check (status 1, one error line), not a user error.
    gt, lst = write_inputs(tmp_path, release[3], release[2], flip=True)
    result = run_vadmil(*args, f"gt={gt}", f"list={lst}", "strict=true", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "vadmil: error: gt-check failed (strict=true)" in result.stderr
    assert "with 1 mismatching frames in 1 videos" in result.stdout


def test_cli_missing_id_is_a_user_error(release, tiny_data, tmp_path):
    store, manifest = tiny_data
    gt, lst = write_inputs(tmp_path, release[3], release[2])
    lst.write_text(lst.read_text() + "not_in_store.mp4\n")
    args = ("gt-check", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}")
    result = run_vadmil(*args, f"gt={gt}", f"list={lst}", cwd=tmp_path)
    assert_user_error(result, "not_in_store", "not in feature store")

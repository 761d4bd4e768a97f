"""The HDF5 feature store: round trips, resumable writes, kill -9 safety, errors, fork safety.

Crash-safety guarantees under test: a writer never modifies a published file in place (``append`` writes a
whole-or-nothing pending file, ``commit`` writes a new segment and replaces the index atomically), so a SIGKILL at
any moment leaves a store that opens and validates, holds every video whose ``append`` returned (byte-equal), and
that the next writer completes: pending videos committed exactly once, the ``.pending`` dir, temp files and
segments no index links to gone. The segmented layout itself (v1 stores, compaction): tests/test_store_segments.py.
"""

import hashlib
import os
import pathlib
import pickle
import shutil
import signal
import time

import h5py
import numpy as np
import pytest

import vadmil.data.store_layout as layout_module  # the segments and the index
import vadmil.data.store_writer as store_module  # the writing half of the store
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

D, C = 8, 2


def _recipe(**kw):
    return make_recipe(**{"backbone": "test", "feature_dim": D, "n_crops": C, **kw})


def _features(seed: int, t: int = 5, c: int = C, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, c, d)).astype(np.float32)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "features.h5"


@pytest.fixture
def store(path):
    with FeatureStore.create(path, _recipe()) as s:
        yield s


# ---- round trips -----------------------------------------------------------------------------------------------
def test_round_trip_float32_exact_and_reopen(path):
    x = {"b": _features(1, 3), "a": _features(2, 7), "c": _features(3, 1)}
    with FeatureStore.create(path, _recipe()) as s:
        for vid, f in x.items():
            assert s.append(vid, f, n_frames=16 * len(f), fps=25.0, source=f"/videos/{vid}.mp4") is True
    with FeatureStore(path) as s:  # read-only reopen
        assert s.ids() == ["a", "b", "c"]
        assert len(s) == 3 and "a" in s and "z" not in s
        for vid, f in x.items():
            got = s.read(vid)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, f)
        assert s.feature_dim == D and s.n_crops == C and not s.pooled
        assert s.geometry == SnippetGeometry(16, 16, "drop")
        assert s.attrs["schema_version"] == 2 and s.attrs["backbone"] == "test"


def test_round_trip_float16_within_tolerance(path):
    x = _features(0, 20) * 10
    with FeatureStore.create(path, _recipe(feature_dtype="float16")) as s:
        s.append("v", x, n_frames=320, fps=30.0)
    with FeatureStore(path) as s:
        assert s.file["videos/v/features"].dtype == np.float16  # stored compactly
        got = s.read("v")
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, x, rtol=1e-3, atol=1e-3)


def test_info_n_frames_n_snippets(store):
    store.append("v1", _features(0, 6), n_frames=100, fps=29.97, source="/data/v1.avi")
    info = store.info("v1")
    assert info["n_frames"] == 100 and store.n_frames("v1") == 100
    assert info["n_snippets"] == 6 and store.n_snippets("v1") == 6
    assert info["fps"] == pytest.approx(29.97)
    assert info["source"] == "/data/v1.avi"
    assert info["complete"] is True
    assert info["mean_norm"] == pytest.approx(np.linalg.norm(_features(0, 6), axis=-1).mean(), rel=1e-6)


def test_unknown_id_raises_with_id_and_fix(store):
    with pytest.raises(VadmilError, match=r"video 'nope' is not in feature store .*features\.h5.*ids\(\)"):
        store.read("nope")


def test_append_existing_complete_is_skipped_unless_overwrite(store):
    first, second = _features(1), _features(2, 9)
    assert store.append("v", first, n_frames=80, fps=30.0) is True
    assert store.append("v", second, n_frames=144, fps=30.0) is False
    np.testing.assert_array_equal(store.read("v"), first)
    assert store.n_frames("v") == 80
    assert store.append("v", second, n_frames=144, fps=30.0, overwrite=True) is True
    np.testing.assert_array_equal(store.read("v"), second)
    assert store.n_frames("v") == 144 and store.ids() == ["v"]


def test_overwrite_of_a_committed_video_is_read_before_and_after_commit(path):
    first, second = _features(1), _features(2, 9)
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v", first, n_frames=80, fps=30.0)
    with FeatureStore.create(path, _recipe()) as s:
        assert s.append("v", second, n_frames=144, fps=30.0) is False
        assert s.append("v", second, n_frames=144, fps=30.0, overwrite=True) is True
        # the pending copy is newer than the committed one: writer and readers see it before the commit
        np.testing.assert_array_equal(s.read("v"), second)
        assert s.n_frames("v") == 144 and s.n_snippets("v") == 9
        with FeatureStore(path) as r:
            np.testing.assert_array_equal(r.read("v"), second)
            assert r.ids() == ["v"] and r.validate() == []
        assert s.commit() == 1
    with FeatureStore(path) as r:
        np.testing.assert_array_equal(r.read("v"), second)
        assert r.ids() == ["v"] and r.n_frames("v") == 144


def test_incomplete_group_is_invisible_and_replaced(path):
    with FeatureStore.create(path, _recipe()) as s:
        s.append("done", _features(0), n_frames=80, fps=30.0)
    # an interrupted write: data and attributes but no `complete` flag
    with h5py.File(path, "a") as f:
        g = f["videos"].create_group("half")
        g.create_dataset("features", data=np.full((4, C, D), 7.0, dtype=np.float32))
        g.attrs["n_frames"] = 64
    with FeatureStore(path) as s:
        assert s.ids() == ["done"] and "half" not in s and len(s) == 1
        assert s.ids(complete_only=False) == ["done", "half"]
        assert s.validate() == []
        with pytest.raises(VadmilError, match="'half' is not in feature store.*never completed"):
            s.read("half")
    x = _features(5, 3)
    with FeatureStore.create(path, _recipe()) as s:
        assert s.append("half", x, n_frames=48, fps=30.0) is True
    with FeatureStore(path) as s:
        assert s.ids() == ["done", "half"]
        np.testing.assert_array_equal(s.read("half"), x)
        assert s.n_frames("half") == 48


# ---- kill -9 during writes -------------------------------------------------------------------------------------
def _files_beside(path) -> list[str]:
    """Everything in the store's directory, pending files included (as 'features.h5.pending/<name>')."""
    out = []
    for p in sorted(path.parent.iterdir()):
        out += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())] if p.is_dir() else [p.name]
    return out


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _linked_segments(path) -> list[str]:
    """The segment files the store's index links to, as '<store>.segments/<name>'."""
    with h5py.File(path, "r") as f:
        return sorted({e.segment for e in layout_module.entries(f).values() if e.segment})


def _write_v1(path, videos: dict) -> None:
    """A store as vadmil wrote them before segments (schema v1): every video inside the one file."""
    with h5py.File(path, "w") as f:
        for key, value in {**_recipe(), "schema_version": 1, "vadmil_version": "0.1.0"}.items():
            f.attrs[key] = value
        for vid, x in videos.items():
            store_module._write_video(
                f.create_group(f"videos/{vid}"), x, {"n_frames": 16 * len(x), "fps": 30.0}
            )


def _check_after_kill(path, returned, maybe, features_of) -> set[str]:
    """A plain reader right after a kill: the store opens and validates, every video whose append returned is
    there and byte-equal, and nothing else is there but videos in ``maybe`` (in flight when the writer died)."""
    with FeatureStore(path) as s:
        assert s.validate() == []
        visible = set(s.ids())
        assert set(returned) <= visible <= set(returned) | set(maybe)
        for vid in visible:
            np.testing.assert_array_equal(s.read(vid), features_of(vid))
    return visible


def _resume_and_check(path, recipe, visible, all_ids, features_of) -> None:
    """A new writer commits what the killed one left pending, skips what is there, writes what is missing; after
    it closes every video is committed exactly once and no pending or temporary file is left."""
    with FeatureStore.create(path, recipe) as s:
        assert not s.pending_dir.exists()  # pending videos were committed on opening
        with h5py.File(path, "r") as f:
            assert sorted(f["videos"]) == sorted(visible)
        for vid in all_ids:
            x = features_of(vid)
            assert s.append(vid, x, n_frames=16 * len(x), fps=30.0) is (vid not in visible)
    # only the index, the lock and the segments the index links to: the killed writer's leftovers are gone
    assert _files_beside(path) == [path.name, f"{path.name}.lock", *_linked_segments(path)]
    with h5py.File(path, "r") as f:  # the store file itself, no pending files left to help
        assert sorted(f["videos"]) == sorted(all_ids)
        assert all(f["videos"][v].attrs["complete"] for v in all_ids)
    with FeatureStore(path) as s:
        assert s.ids() == sorted(all_ids) and s.validate() == []
        for vid in all_ids:
            np.testing.assert_array_equal(s.read(vid), features_of(vid))


def _step_features(vid: str) -> np.ndarray:
    return _features({"v0": 0, "v1": 1, "v2": 2, "victim": 9}[vid], 4)


def _kill_at(owner, name: str, when: str, k: int) -> None:
    """Replace ``owner.name`` so that the process SIGKILLs itself just before or just after its k-th call."""
    real, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when == "before" and calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if when == "after" and calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


_APPEND, _COMMIT = "append", "commit"
_KILL_POINTS = {
    # append("victim"): the pending file is written as <sha1>.tmp, then renamed to <sha1>.h5
    "append:writing-pending": (_APPEND, store_module, "_write_video", "before", 1),
    "append:pending-written": (_APPEND, store_module, "_write_video", "after", 1),
    "append:before-rename": (_APPEND, os, "replace", "before", 1),
    "append:after-rename": (_APPEND, os, "replace", "after", 1),
    # commit() of v2 and victim: write both into a new segment (.tmp), sync it, rename it into place; hard-link a
    # store file holding videos itself (v1) as a segment; sync the folder; write the new index, sync it, replace
    # the store file with it; delete the pending files and folder
    "commit:first-video-in-segment": (_COMMIT, store_module, "_write_video", "after", 1),
    "commit:segment-synced": (_COMMIT, store_module, "_fsync", "after", 1),
    "commit:before-segment-rename": (_COMMIT, os, "replace", "before", 1),
    "commit:after-segment-rename": (_COMMIT, os, "replace", "after", 1),
    "commit:after-v1-store-linked": (_COMMIT, os, "link", "after", 1),
    "commit:segments-folder-synced": (_COMMIT, store_module, "_fsync", "after", 2),
    "commit:index-written": (_COMMIT, layout_module, "write_index", "after", 1),
    "commit:index-synced": (_COMMIT, store_module, "_fsync", "after", 3),
    "commit:before-replace": (_COMMIT, os, "replace", "before", 2),
    "commit:after-replace": (_COMMIT, os, "replace", "after", 2),
    "commit:after-first-pending-delete": (_COMMIT, pathlib.Path, "unlink", "after", 1),
    "commit:before-pending-dir-removal": (_COMMIT, pathlib.Path, "rmdir", "before", 1),
}
_REPLACED = ("commit:after-replace", "commit:after-first-pending-delete", "commit:before-pending-dir-removal")


def _kill_cases():
    """append kills with and without another pending video (on a segmented store); commit kills with two pending
    videos, on a segmented store and on a v1 store (whose first commit links it in as a segment)."""
    for p, (phase, *_) in _KILL_POINTS.items():
        if phase == _APPEND:
            yield from ((p, other, "v2") for other in (False, True))
        else:
            yield from ((p, True, start) for start in ("v1", "v2") if start == "v1" or "v1-store" not in p)


@pytest.mark.parametrize("point, other_pending, start", list(_kill_cases()))
def test_kill_9_at_each_step_of_append_and_commit(path, point, other_pending, start):
    """A forked writer SIGKILLs itself at one step of append or commit. The published store is untouched until the
    commit's atomic replace; a plain reader sees exactly the committed and whole pending videos; the next writer
    commits those, rewrites only the victim of an unfinished append, and leaves no pending, temp or unlinked
    segment file."""
    phase, owner, name, when, k = _KILL_POINTS[point]
    if start == "v1":
        _write_v1(path, {vid: _step_features(vid) for vid in ("v0", "v1")})
    else:
        with FeatureStore.create(path, _recipe()) as s:
            for vid in ("v0", "v1"):
                s.append(vid, _step_features(vid), n_frames=64, fps=30.0)
    published, segments_before = _sha256(path), _linked_segments(path)
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            s = FeatureStore.create(path, _recipe())
            if other_pending:
                s.append("v2", _step_features("v2"), n_frames=64, fps=30.0)
            if phase == _COMMIT:
                s.append("victim", _step_features("victim"), n_frames=64, fps=30.0)
            _kill_at(owner, name, when, k)
            if phase == _APPEND:
                s.append("victim", _step_features("victim"), n_frames=64, fps=30.0)
            else:
                s.commit()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the writer did not kill itself"

    # what the kill left on disk: the kill happened where intended
    pending = f"{path.name}.pending"
    on_disk = _files_beside(path)
    pending_h5 = sum(f.startswith(pending) and f.endswith(".h5") for f in on_disk)
    with h5py.File(path, "r") as f:
        in_store_file = sorted(f["videos"])
    if point in _REPLACED:
        assert in_store_file == ["v0", "v1", "v2", "victim"]
        assert pending_h5 == {"commit:after-replace": 2, "commit:after-first-pending-delete": 1}.get(point, 0)
        assert path.with_name(pending).is_dir()  # the kill came before the pending dir was removed
        # the commit wrote only the new videos: the segments linked before are still linked, byte for byte
        assert set(segments_before) < set(_linked_segments(path))
    else:  # no published file was written in place: not a byte changed
        assert _sha256(path) == published and in_store_file == ["v0", "v1"]
        assert _linked_segments(path) == segments_before
        victim_whole = phase == _COMMIT or point == "append:after-rename"
        assert pending_h5 == other_pending + victim_whole
        if phase == _APPEND and not victim_whole:  # a half-done pending file, invisible under its temp name
            assert sum(f.endswith(".tmp") for f in on_disk) == 1
        if point in ("commit:index-written", "commit:index-synced", "commit:before-replace"):
            assert f".{path.name}.commit" in on_disk  # the new index, not yet in place
        if point in (
            "commit:first-video-in-segment",
            "commit:segment-synced",
            "commit:before-segment-rename",
        ):
            assert sum(f.endswith(".tmp") for f in on_disk) == 1  # the segment, under its temp name

    expected = ["v0", "v1"] + ["v2"] * other_pending
    victim_returned = phase == _COMMIT or point == "append:after-rename"
    visible = _check_after_kill(path, expected + ["victim"] * victim_returned, ["victim"], _step_features)
    assert visible == set(expected) | ({"victim"} if victim_returned else set())
    _resume_and_check(path, _recipe(), visible, [*expected, "victim"], _step_features)


def _writer_features(i: int) -> np.ndarray:
    t = 40 + i % 60
    return (np.arange(t * 2 * 256, dtype=np.float32) * 0.001 + i).reshape(t, 2, 256)


def _writer_video(vid: str) -> np.ndarray:
    return _writer_features(int(vid[1:]))


_WRITER_RECIPE = make_recipe(backbone="test", feature_dim=256, n_crops=2)


def _writer_loop(path, out_fd: int) -> None:
    """Append forever, reporting each id once its append returned; commit every third video, announcing it."""
    store = FeatureStore.create(path, _WRITER_RECIPE)
    i = 0
    while True:
        x = _writer_features(i)  # cheap to make, so the writer spends its time inside append() and commit()
        store.append(f"v{i:05d}", x, n_frames=16 * len(x), fps=30.0)
        os.write(out_fd, f"v{i:05d}\n".encode())
        i += 1
        if i % 3 == 0:
            os.write(out_fd, b"commit\n")
            store.commit()


# (what to wait for, how many of them, then how long to sleep before SIGKILL): kills land inside appends,
# inside commits (at their start: the copy, or later: adding, syncing, replacing, deleting) and between them.
_KILL_TRIALS = [
    ("id", 4, 0.0),
    ("id", 5, 0.0005),
    ("id", 7, 0.001),
    ("id", 8, 0.002),
    ("id", 10, 0.003),
    ("id", 11, 0.005),
    ("commit", 1, 0.0),
    ("commit", 2, 0.0002),
    ("commit", 2, 0.0005),
    ("commit", 3, 0.001),
    ("commit", 3, 0.002),
    ("commit", 4, 0.004),
]


@pytest.mark.parametrize("trigger, count, delay", _KILL_TRIALS)
def test_kill_9_at_random_moments_leaves_a_resumable_store(tmp_path, trigger, count, delay):
    """A forked writer appends (and commits every third video) in a loop and is SIGKILLed from outside after a
    chosen report and delay; the guarantees hold wherever the kill landed."""
    path = tmp_path / "features.h5"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_fd)
            _writer_loop(path, write_fd)
        finally:
            os._exit(3)
    os.close(write_fd)
    lines, seen = [], 0
    try:
        with os.fdopen(read_fd) as reports:
            deadline = time.monotonic() + 20
            while seen < count and time.monotonic() < deadline:
                line = reports.readline().strip()
                if not line:
                    break
                lines.append(line)
                seen += (line == "commit") == (trigger == "commit")
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            lines += [line.strip() for line in reports]  # reports written before the kill
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    returned = [line for line in lines if line != "commit"]
    assert seen == count, f"the writer did not get going: {lines}"
    assert returned == [f"v{i:05d}" for i in range(len(returned))]
    in_flight = f"v{len(returned):05d}"  # its append may have finished without being reported
    visible = _check_after_kill(path, returned, [in_flight], _writer_video)
    _resume_and_check(path, _WRITER_RECIPE, visible, [*returned, in_flight], _writer_video)


# ---- one writer at a time; readers see pending videos ------------------------------------------------------------
def test_second_writer_is_refused_while_one_is_open(path):
    first = FeatureStore.create(path, _recipe())
    try:
        first.append("v0", _features(0), n_frames=80, fps=30.0)
        # flock locks an open file description: a second open blocks even within one process
        with pytest.raises(
            VadmilError, match=r"features\.h5 is being written by another process.*another output"
        ):
            FeatureStore.create(path, _recipe())
        with pytest.raises(VadmilError, match="being written by another process"):
            FeatureStore.create(path, _recipe(feature_dim=16))  # the lock is checked before anything else
        first.append("v1", _features(1), n_frames=80, fps=30.0)  # the refusal disturbed nothing
        with FeatureStore(path) as r:  # readers are never refused
            assert r.ids() == ["v0", "v1"]
    finally:
        first.close()
    assert not first.writable
    with FeatureStore.create(path, _recipe()) as s:  # closing released the lock
        assert s.ids() == ["v0", "v1"]


def test_second_writer_in_another_process_is_refused(path):
    with FeatureStore.create(path, _recipe()):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                FeatureStore.create(path, _recipe())
            except VadmilError as err:
                code = 0 if "being written by another process" in str(err) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_readers_see_pending_videos_before_commit_and_the_same_after(path):
    xs = {vid: _features(i, 3 + i) for i, vid in enumerate(["a", "b", "c"])}
    with FeatureStore.create(path, _recipe()) as w:
        assert w.commit() == 0 and not w.pending_dir.exists()
        w.append("a", xs["a"], n_frames=48, fps=30.0)
        w.append("b", xs["b"], n_frames=64, fps=30.0)
        with h5py.File(path, "r") as f:
            assert list(f["videos"]) == []  # appends do not touch the published file
        early = FeatureStore(path)  # opened before the commit, first looks after it
        r = FeatureStore(path)
        assert r.ids() == ["a", "b"] and len(r) == 2 and "a" in r and "c" not in r
        np.testing.assert_array_equal(r.read("a"), xs["a"])  # "b" is left unread until after the commit
        assert r.validate() == []

        assert w.commit() == 2
        assert not w.pending_dir.exists()
        with h5py.File(path, "r") as f:
            assert sorted(f["videos"]) == ["a", "b"]
        assert w.commit() == 0
        for reader in (r, early):  # a pending file committed since: the reader finds it in the new store file
            assert reader.ids() == ["a", "b"] and "b" in reader
            for vid in ("a", "b"):
                np.testing.assert_array_equal(reader.read(vid), xs[vid])
            assert reader.n_frames("b") == 64 and reader.validate() == []
        early.close()

        w.append("c", xs["c"], n_frames=80, fps=30.0)
        assert r.ids() == ["a", "b"]  # a reader's view of pending videos is a snapshot ...
        r.close()
        r = FeatureStore(path)  # ... a new one sees the new pending video
        assert r.ids() == ["a", "b", "c"]
        np.testing.assert_array_equal(r.read("c"), xs["c"])
    # close() committed
    assert not path.with_name("features.h5.pending").exists()
    np.testing.assert_array_equal(r.read("c"), xs["c"])
    r.close()
    with h5py.File(path, "r") as f:
        assert sorted(f["videos"]) == ["a", "b", "c"]
    assert _files_beside(path) == ["features.h5", "features.h5.lock", *_linked_segments(path)]


def test_failed_commit_keeps_pending_videos_and_releases_the_lock(path, monkeypatch):
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v0", _features(0), n_frames=80, fps=30.0)
    published = _sha256(path)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    s = FeatureStore.create(path, _recipe())
    s.append("v1", _features(1), n_frames=80, fps=30.0)
    monkeypatch.setattr(store_module, "_write_video", no_space)
    with pytest.raises(VadmilError, match="cannot commit 1 video.*store unchanged.*No space left"):
        s.close()
    with pytest.raises(
        VadmilError, match="No space left"
    ):  # the next writer retries the commit on opening ...
        FeatureStore.create(path, _recipe())
    assert _sha256(path) == published
    with FeatureStore(path) as r:  # ... and meanwhile readers see the pending video
        assert r.ids() == ["v0", "v1"]
        np.testing.assert_array_equal(r.read("v1"), _features(1))
    monkeypatch.undo()
    with FeatureStore.create(path, _recipe()) as s:  # neither failure left the lock held
        assert s.ids() == ["v0", "v1"] and not s.pending_dir.exists()
    with h5py.File(path, "r") as f:
        assert sorted(f["videos"]) == ["v0", "v1"]


# ---- errors on opening -----------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(VadmilError, match=r"nope\.h5 does not exist.*vadmil extract"):
        FeatureStore(missing)


def test_truncated_file(path, tmp_path):
    with FeatureStore.create(path, _recipe()) as s:
        for i in range(5):
            s.append(f"v{i}", _features(i, 50), n_frames=800, fps=30.0)
    cut = tmp_path / "cut.h5"
    shutil.copy(path, cut)
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(VadmilError, match=r"cut\.h5 is not a readable HDF5 file.*re-create it"):
        FeatureStore(cut)


def test_text_file(tmp_path):
    text = tmp_path / "features.txt"
    text.write_text("video_id,feature\nv1,0.5\n")
    with pytest.raises(VadmilError, match=r"features\.txt is not a readable HDF5 file.*re-create it"):
        FeatureStore(text)


def test_foreign_hdf5_file(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["v1"] = np.zeros((3, 8), dtype=np.float32)
    with pytest.raises(
        VadmilError, match=r"foreign\.h5 is an HDF5 file but not a vadmil feature store.*vadmil import"
    ):
        FeatureStore(foreign)


def test_newer_schema_version(path):
    FeatureStore.create(path, _recipe()).close()
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 3
    with pytest.raises(VadmilError, match=r"features\.h5 has schema version 3 but .* reads versions 1, 2"):
        FeatureStore(path)


def test_check_feature_dim_names_both_dims(store):
    store.check_feature_dim(None)
    store.check_feature_dim(D)
    with pytest.raises(
        VadmilError, match=r"holds 8-d features but the config expects 1024-d.*dataset\.feature_dim=8"
    ):
        store.check_feature_dim(1024)


def test_create_existing_with_other_recipe_names_the_field(path):
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v", _features(0), n_frames=80, fps=30.0)
    with pytest.raises(
        VadmilError,
        match=r"features\.h5 was made with a different recipe \(feature_dim: 8 != 16\).*new output path",
    ):
        FeatureStore.create(path, _recipe(feature_dim=16))
    with pytest.raises(VadmilError, match=r"different recipe \(snippet_stride: 16 != 8\)"):
        FeatureStore.create(path, _recipe(geometry=SnippetGeometry(16, 8)))
    assert not path.with_name("features.h5.pending").exists()  # a refused writer wrote nothing
    # the same recipe reopens for appending, keeping what is there (so the refused ones released the lock)
    with FeatureStore.create(path, _recipe()) as s:
        assert s.writable and s.ids() == ["v"]
    with FeatureStore(path) as s:
        assert not s.writable and s.ids() == ["v"]


# ---- errors on appending ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape",
    [(5, 3, D), (5, C, D + 1), (5, C * D), (0, C, D)],
    ids=["crops", "dim", "2d", "empty"],
)
def test_append_wrong_shape(store, shape):
    with pytest.raises(
        VadmilError, match=r"video 'v': features have shape .* needs \[T>=1, 2, 8\] \(n_crops, feature_dim\)"
    ):
        store.append("v", np.zeros(shape, dtype=np.float32), n_frames=80, fps=30.0)
    assert store.ids(complete_only=False) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_append_non_finite_writes_nothing(store, bad):
    x = _features(0)
    x[2, 1, 3] = bad
    with pytest.raises(
        VadmilError,
        match=r"video 'v': features contain NaN/Inf \(or overflow float32\); nothing was written for it",
    ):
        store.append("v", x, n_frames=80, fps=30.0)
    assert store.ids(complete_only=False) == []
    assert not store.pending_dir.exists()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_append_float16_overflow_writes_nothing(path):
    with FeatureStore.create(path, _recipe(feature_dtype="float16")) as s:
        x = _features(0)
        x[1, 0, 0] = 70000.0  # finite in float32, inf once stored as float16
        with pytest.raises(
            VadmilError,
            match=r"video 'big': features contain NaN/Inf \(or overflow float16\); nothing was written",
        ):
            s.append("big", x, n_frames=80, fps=30.0)
        assert s.ids(complete_only=False) == [] and not s.pending_dir.exists()
        x[1, 0, 0] = 65504.0  # the largest float16 is fine
        assert s.append("max", x, n_frames=80, fps=30.0) is True
    with FeatureStore(path) as s:
        assert s.ids() == ["max"] and s.read("max")[1, 0, 0] == 65504.0 and s.validate() == []


@pytest.mark.parametrize("video_id", ["", "cam/1", ".", ".."])
def test_append_bad_id(store, video_id):
    with pytest.raises(
        VadmilError, match="invalid video id .*non-empty, not '.' or '..', and contain no '/'"
    ):
        store.append(video_id, _features(0), n_frames=80, fps=30.0)
    assert store.ids(complete_only=False) == []


def test_append_to_read_only_store(path):
    FeatureStore.create(path, _recipe()).close()
    with FeatureStore(path) as s:
        assert not s.writable
        with pytest.raises(VadmilError, match=r"features\.h5 is open read-only.*FeatureStore\.create"):
            s.append("v", _features(0), n_frames=80, fps=30.0)
        with pytest.raises(VadmilError, match=r"features\.h5 is open read-only.*FeatureStore\.create"):
            s.commit()
    with FeatureStore(path) as s:
        assert s.ids(complete_only=False) == []


def test_read_non_finite_names_video(path):
    FeatureStore.create(path, _recipe()).close()
    with h5py.File(path, "a") as f:  # e.g. a store imported by another tool
        g = f["videos"].create_group("bad")
        x = _features(0, 3)
        x[1, 0, 0] = np.nan
        g.create_dataset("features", data=x)
        g.attrs.update({"n_frames": 48, "complete": True})
    with FeatureStore(path) as s:
        with pytest.raises(
            VadmilError, match=r"video 'bad' in feature store .* NaN/Inf features in 1 of 3 snippets"
        ):
            s.read("bad")
        assert np.isnan(s.read("bad", check_finite=False)[1, 0, 0])
        assert s.validate() == ["bad: NaN/Inf features"]


# ---- summaries -------------------------------------------------------------------------------------------------
def test_mean_norm_weighted_by_snippets(store):
    assert np.isnan(store.mean_norm())
    xs = [_features(0, 2) * 10, _features(1, 30)]
    for i, x in enumerate(xs):
        store.append(f"v{i}", x, n_frames=16 * len(x), fps=30.0)
    expected = np.linalg.norm(np.concatenate(xs), axis=-1).mean()
    assert store.mean_norm() == pytest.approx(expected, rel=1e-5)


def test_validate_reports_snippet_count_mismatch(store):
    store.append("ok", _features(0, 6), n_frames=100, fps=30.0)  # 100 frames, 16/16 drop: 6 snippets
    store.append("off", _features(1, 3), n_frames=100, fps=30.0)
    assert store.validate() == ["off: 3 snippets but n_frames=100 gives 6"]


def test_validate_skips_frame_check_for_pooled_store(path):
    with FeatureStore.create(path, _recipe(pooled=True)) as s:
        s.append("v", _features(0, 32), n_frames=100, fps=30.0)
        assert s.pooled and s.validate() == []


# ---- handles across processes ----------------------------------------------------------------------------------
def test_pickle_round_trip(store):
    store.append("v", _features(0), n_frames=80, fps=30.0)
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None  # no handle travels; it opens on first use
    assert clone.path == store.path and store.writable
    assert (
        not clone.writable and clone._lock_fd is None
    )  # a clone of a writer is a reader: the lock stays put
    np.testing.assert_array_equal(clone.read("v"), _features(0))  # still pending: read from its pending file
    np.testing.assert_array_equal(store.read("v"), _features(0))
    with pytest.raises(VadmilError, match="open read-only"):
        clone.append("w", _features(1), n_frames=80, fps=30.0)
    clone.close()
    assert store.commit() == 1  # closing the clone neither committed nor released the writer's lock
    with pytest.raises(VadmilError, match="being written by another process"):
        FeatureStore.create(store.path, _recipe())


class _StoreDataset:
    """A map-style dataset reading from one shared FeatureStore."""

    def __init__(self, store, ids):
        self.store, self.ids = store, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        x = self.store.read(self.ids[i])
        # the handle in use was opened by this worker, not inherited from the parent
        return self.ids[i], x, self.store._pid == os.getpid()


def test_dataloader_workers_after_fork(path):
    import torch.utils.data

    expected = {f"v{i:02d}": _features(i, 3 + i % 4) for i in range(12)}
    with FeatureStore.create(path, _recipe()) as s:
        for vid, x in expected.items():
            s.append(vid, x, n_frames=16 * len(x), fps=30.0)
    store = FeatureStore(path)
    store.read("v00")  # the parent holds an open handle when the workers fork
    loader = torch.utils.data.DataLoader(
        _StoreDataset(store, sorted(expected)), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    got = {}
    for vid, x, own_handle in loader:
        assert own_handle
        got[vid] = x.numpy()
    assert sorted(got) == sorted(expected)
    for vid, x in expected.items():
        np.testing.assert_array_equal(got[vid], x)
    np.testing.assert_array_equal(store.read("v05"), expected["v05"])  # the parent's handle still works
    store.close()


def test_unreadable_pending_file_is_skipped_and_cleaned(path, caplog):
    """After a power loss a renamed pending file may hold garbage: readers skip it, the next commit removes it."""
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v0", _features(0), n_frames=80, fps=30.0)
    pending = path.with_name(path.name + ".pending")
    pending.mkdir()
    (pending / "0123abcd.h5").write_bytes(b"\0" * 100)
    with FeatureStore(path) as reader:
        assert reader.ids() == ["v0"]
    assert "unreadable pending video file" in caplog.text
    with FeatureStore.create(path, _recipe()) as s:
        assert s.append("v1", _features(1), n_frames=80, fps=30.0) is True
    assert not pending.exists()
    with FeatureStore(path) as s:
        assert s.ids() == ["v0", "v1"] and s.validate() == []


def test_extra_streams_round_trip_pending_and_committed(path):
    audio = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    with FeatureStore.create(path, _recipe(extra_streams={"vggish": 4})) as s:
        s.append("v", _features(0), n_frames=80, fps=30.0, extra={"vggish": audio})
        np.testing.assert_array_equal(s.read_extra("v", "vggish"), audio)  # still pending
        assert s.extra_streams == {"vggish": 4}
    with FeatureStore(path) as s:  # committed
        np.testing.assert_array_equal(s.read_extra("v", "vggish"), audio)
        with pytest.raises(VadmilError, match="no extra stream 'flow'"):
            s.read_extra("v", "flow")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"flow": np.zeros((3, 4))}, "'flow' is not declared"),
        ({"vggish": np.zeros((3, 5))}, r"has shape \(3, 5\); the store needs \[T>=1, 4\]"),
        ({"vggish": np.full((3, 4), np.nan)}, "'vggish' contains NaN/Inf"),
    ],
)
def test_bad_extra_streams_write_nothing(path, extra, match):
    with FeatureStore.create(path, _recipe(extra_streams={"vggish": 4})) as s:
        with pytest.raises(VadmilError, match=match):
            s.append("v", _features(0), n_frames=80, fps=30.0, extra=extra)
        assert "v" not in s

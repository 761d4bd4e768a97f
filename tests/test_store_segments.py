"""The segmented store (schema v2, vadmil/data/store_layout.py): commits that write only the new videos, v1 stores
read and upgraded without a copy, `vadmil store compact` (vadmil/data/store_compact.py) and its kill -9 safety."""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib
import shutil
import signal

import h5py
import numpy as np
import pytest

import vadmil.data.store_layout as layout
import vadmil.data.store_writer as writer
from tests.inprocess import run_inprocess
from tests.test_store import (
    _check_after_kill,
    _files_beside,
    _kill_at,
    _linked_segments,
    _resume_and_check,
    _step_features,
    _write_v1,
)  # fmt: skip
from tests.test_store import _recipe as _v1_recipe
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.store_compact import compact
from vadmil.errors import VadmilError

D, C = 8, 2


def _recipe():
    return make_recipe(backbone="test", feature_dim=D, n_crops=C, extra_streams={"audio": 4})


def _x(i: int, t: int = 5) -> np.ndarray:
    return np.random.default_rng(i).normal(size=(t, C, D)).astype(np.float32)


def _vid(i: int) -> str:
    return f"v{i:02d}"


def _of(vid: str) -> np.ndarray:
    return _x(int(vid[1:]))


def _append(path, ids, v1: bool = False) -> None:
    """Append videos ``ids`` in one writer session (one commit); ``v1``: to a store made by :func:`_write_v1`."""
    with FeatureStore.create(path, _v1_recipe() if v1 else _recipe()) as s:
        for i in ids:
            extra = {} if v1 else {"audio": np.full((3, 4), i, np.float32)}
            s.append(_vid(i), _x(i), n_frames=80, fps=30.0, extra=extra)


def _sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _state(path) -> dict[str, tuple]:
    """Every file of the store (index, lock, segments, pending): (inode, mtime, sha256) — to show what a step did
    not touch."""
    out = {}
    for name in _files_beside(path):
        if not name.startswith(path.name):
            continue
        f = path.parent / name
        out[name] = (f.stat().st_ino, f.stat().st_mtime_ns, _sha(f))
    return out


def _assert_exact(path, ids) -> None:
    with FeatureStore(path) as s:
        assert s.ids() == sorted(_vid(i) for i in ids) and s.validate() == []
        for i in ids:
            np.testing.assert_array_equal(s.read(_vid(i)), _x(i))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "features.h5"


# ---- commits cost the new data ------------------------------------------------------------------------------------
def test_a_commit_writes_one_segment_of_the_new_videos_and_leaves_the_others_untouched(path):
    _append(path, range(6))
    _append(path, range(6, 12))
    before = _state(path)
    _append(path, [12])
    after = _state(path)
    new = sorted(set(after) - set(before))
    assert new == ["features.h5.segments/000003.h5"]  # one new segment: the one new video
    for name in before:
        if name.startswith("features.h5.segments/"):
            assert after[name] == before[name]  # earlier segments: same file, same bytes
    with h5py.File(path.parent / new[0], "r") as f:
        assert sorted(f["videos"]) == ["v12"]
    index_bytes = path.stat().st_size
    assert index_bytes < 64 * 1024  # the index holds links only
    _assert_exact(path, range(13))
    with FeatureStore(path) as s:
        np.testing.assert_array_equal(s.read_extra("v12", "audio"), np.full((3, 4), 12, np.float32))
        assert s.attrs["schema_version"] == 2


def test_plain_h5py_follows_the_links(path):
    _append(path, range(3))
    with h5py.File(path, "r") as f:
        assert sorted(f["videos"]) == ["v00", "v01", "v02"]
        np.testing.assert_array_equal(f["videos"]["v01"]["features"][()], _x(1))


def test_an_overwritten_video_frees_its_segment_and_an_older_reader_still_reads(path):
    _append(path, [0])
    early = FeatureStore(path)  # holds the index that links to segment 1
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v00", _x(7), n_frames=80, fps=30.0, overwrite=True)
    assert _linked_segments(path) == ["features.h5.segments/000002.h5"]
    assert _files_beside(path) == ["features.h5", "features.h5.lock", "features.h5.segments/000002.h5"]
    np.testing.assert_array_equal(early.read("v00"), _x(7))  # its segment is gone: it re-reads the store
    early.close()


# ---- v1 stores ---------------------------------------------------------------------------------------------------
def test_a_v1_store_is_read_as_it_is_and_its_first_commit_links_it_without_a_copy(path):
    _write_v1(path, {_vid(i): _x(i) for i in range(3)})
    v1 = _sha(path)
    inode = path.stat().st_ino
    with FeatureStore(path) as s:
        assert s.attrs["schema_version"] == 1 and s.ids() == ["v00", "v01", "v02"]
        np.testing.assert_array_equal(s.read("v02"), _x(2))
    with FeatureStore.create(path, _v1_recipe()) as s:  # reopening alone changes nothing
        pass
    assert _sha(path) == v1
    _append(path, [3], v1=True)
    base = path.parent / "features.h5.segments/000002.h5"
    assert base.stat().st_ino == inode and _sha(base) == v1  # the v1 file, now a segment: not copied
    assert _linked_segments(path) == ["features.h5.segments/000001.h5", "features.h5.segments/000002.h5"]
    _assert_exact(path, range(4))
    with FeatureStore(path) as s:
        assert s.attrs["schema_version"] == 2


def test_without_hard_links_the_first_commit_of_a_v1_store_copies_it_once(path, monkeypatch, caplog):
    _write_v1(path, {_vid(i): _x(i) for i in range(2)})

    def no_link(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    _append(path, [2], v1=True)
    assert "has no hard links" in caplog.text
    _assert_exact(path, range(3))
    assert not list(path.parent.glob("features.h5.segments/*.tmp"))


_NO_LINK_KILLS = {
    # the first commit of a v1 store where the file system has no hard links: the segment of the new videos is
    # renamed into place (os.replace 1), the v1 file copied (.tmp), synced and renamed into the segments folder
    # (os.replace 2), then the new index replaces the store (os.replace 3)
    "v1-copy-written": (shutil, "copyfile", "after", 1),
    "v1-copy-renamed": (os, "replace", "after", 2),
    "before-index-replace": (os, "replace", "before", 3),
    "after-index-replace": (os, "replace", "after", 3),
}


@pytest.mark.parametrize("point", list(_NO_LINK_KILLS))
def test_kill_9_while_a_v1_store_is_copied_in_without_hard_links(path, point):
    _write_v1(path, {vid: _step_features(vid) for vid in ("v0", "v1")})
    published = _sha(path)
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.link = lambda *args: (_ for _ in ()).throw(OSError(errno.EPERM, "Operation not permitted"))
            s = FeatureStore.create(path, _v1_recipe())
            s.append("victim", _step_features("victim"), n_frames=64, fps=30.0)
            _kill_at(*_NO_LINK_KILLS[point])
            s.commit()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the writer did not kill itself"
    if point != "after-index-replace":
        assert _sha(path) == published  # the v1 file, not a byte changed
    visible = _check_after_kill(path, ["v0", "v1", "victim"], [], _step_features)
    _resume_and_check(path, _v1_recipe(), visible, ["v0", "v1", "victim"], _step_features)


# ---- sharing: one path, or one file ------------------------------------------------------------------------------
def test_a_store_copied_without_its_segments_is_one_line_naming_the_fix(path, tmp_path):
    _append(path, range(2))
    _append(path, [2])
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(path, tmp_path / "elsewhere" / "features.h5")
    with pytest.raises(VadmilError) as err:
        FeatureStore(tmp_path / "elsewhere" / "features.h5")
    message = str(err.value)
    assert "links to 2 segment file(s) that are not there" in message and "\n" not in message
    assert "features.h5.segments/ — copy or move both" in message and "vadmil store compact" in message


def test_compact_to_an_output_leaves_the_store_and_gives_one_portable_file(path, tmp_path):
    _append(path, range(3))
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v03", _x(3), n_frames=80, fps=30.0)  # pending: a reader sees it, so the copy has it
        before = _state(path)
        result = compact(path, tmp_path / "out" / "shared.h5")
        assert _state(path) == before
    assert result["videos"] == 4 and result["output"] == str(tmp_path / "out" / "shared.h5")
    moved = tmp_path / "moved.h5"
    shutil.move(tmp_path / "out" / "shared.h5", moved)  # one file: it opens anywhere
    assert sorted(os.listdir(tmp_path / "out")) == []
    _assert_exact(moved, range(4))
    with h5py.File(moved, "r") as f:
        assert not any(e.segment for e in layout.entries(f).values())
        assert "video_id" not in f["videos/v03"].attrs  # the pending file's own id attribute is not copied
    with FeatureStore(moved) as s:
        np.testing.assert_array_equal(s.read_extra("v02", "audio"), np.full((3, 4), 2, np.float32))
        assert s.info("v03")["n_frames"] == 80 and s.recipe() == FeatureStore(path).recipe()
    with pytest.raises(VadmilError, match="moved.h5 already exists; choose another output"):
        compact(path, moved)


def test_compact_in_place_then_append_again(path):
    _append(path, range(2))
    _append(path, range(2, 4))
    reader = FeatureStore(path)  # opened before: its segments disappear under it
    result = compact(path)
    assert result["videos"] == 4 and result["bytes_after"] < result["bytes_before"]
    assert _files_beside(path) == ["features.h5", "features.h5.lock"]
    for i in range(4):
        np.testing.assert_array_equal(reader.read(_vid(i)), _x(i))
    reader.close()
    assert compact(path)["bytes_after"] == path.stat().st_size  # already one file: nothing to do
    spelled = path.parent / "sub" / ".." / path.name
    (path.parent / "sub").mkdir()
    assert compact(path, spelled)["output"] == str(path)  # output= the store itself: in place
    _append(path, [4])  # the compacted file becomes the first segment again, by a hard link
    _assert_exact(path, range(5))


def test_compact_refuses_while_a_writer_is_open(path):
    _append(path, [0])
    with FeatureStore.create(path, _recipe()):
        with pytest.raises(VadmilError, match="being written by another process"):
            compact(path)


_COMPACT_KILLS = {
    # compact(): copy every video into .<store>.commit, sync it, replace the store with it, sync the folder, delete
    # the segments and their folder
    "copy-synced": (writer, "_fsync", "after", 1),
    "before-replace": (os, "replace", "before", 1),
    "after-replace": (os, "replace", "after", 1),
    "after-first-segment-deleted": (pathlib.Path, "unlink", "after", 1),
    "before-segments-folder-removed": (pathlib.Path, "rmdir", "before", 1),
}


@pytest.mark.parametrize("point", list(_COMPACT_KILLS))
def test_kill_9_at_each_step_of_compaction(path, point):
    """The store opens with every video exact wherever compaction was killed; the next writer removes what it
    left (a partial copy, segments no index links to) and commits on."""
    _append(path, range(3))
    _append(path, range(3, 5))
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            _kill_at(*_COMPACT_KILLS[point])
            compact(path)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "compaction did not kill itself"
    replaced = point not in ("copy-synced", "before-replace")
    assert _linked_segments(path) == (
        [] if replaced else ["features.h5.segments/000001.h5", "features.h5.segments/000002.h5"]
    )
    ids = [_vid(i) for i in range(5)]
    _check_after_kill(path, ids, [], _of)
    _append(path, [5])
    assert _files_beside(path) == ["features.h5", "features.h5.lock", *_linked_segments(path)]
    _assert_exact(path, range(6))


# ---- the command ---------------------------------------------------------------------------------------------------
def test_vadmil_store_compact(path, tmp_path):
    _append(path, range(2))
    _append(path, [2])
    shared = tmp_path / "shared.h5"
    result = run_inprocess(
        "store", "compact", f"store={path}", f"output={shared}", "progress=false", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"{shared}: one self-contained file, 3 videos" in result.stdout
    _assert_exact(shared, range(3))
    result = run_inprocess("store", "compact", f"store={path}", cwd=tmp_path)
    assert result.returncode == 0 and not (tmp_path / "features.h5.segments").exists()
    _assert_exact(path, range(3))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["frobnicate", "store=x.h5"], "unknown store action 'frobnicate'; choose one of compact"),
        (["compact", "store=missing.h5"], "missing.h5 does not exist"),
        ([], "vadmil store needs an action (compact)"),
        (["compact"], "vadmil store compact needs the store: vadmil store compact store=<store.h5>"),
    ],
)
def test_vadmil_store_bad_input_is_one_line(tmp_path, args, fragment):
    result = run_inprocess("store", *args, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("vadmil: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_many_segments_suggest_compaction(path, monkeypatch, caplog):
    monkeypatch.setattr(writer, "_MANY_SEGMENTS", 1)
    caplog.set_level("INFO", logger="vadmil.data.store")
    _append(path, [0])
    assert "vadmil store compact" not in caplog.text
    _append(path, [1])
    assert "has 2 segment files; `vadmil store compact store=" in caplog.text

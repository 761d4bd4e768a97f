"""Store hardening (vadmil/data/store_writer.py): invalid ids, symlinked stores, a killed commit's partial copy,
a full disk — never a wedged store, a replaced link or a lost committed video."""

from __future__ import annotations

import hashlib
from collections import namedtuple

import h5py
import numpy as np
import pytest

import vadmil.data.store_writer as writer
from vadmil.data.labels import normalise_video_id
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

D, C = 4, 1


def _recipe():
    return make_recipe(backbone="test", feature_dim=D, n_crops=C)


def _x(seed: int, t: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, C, D)).astype(np.float32)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def path(tmp_path):
    with FeatureStore.create(tmp_path / "s.h5", _recipe()) as s:
        s.append("v0", _x(0), n_frames=80, fps=30.0)
    return tmp_path / "s.h5"


@pytest.mark.parametrize("name", ["..npy", "...npy", ".mp4", "._i3d.npy"])
def test_file_names_that_give_no_valid_id_are_refused(name):
    with pytest.raises(VadmilError, match=f"cannot derive a video id from '{name}'; name each file"):
        normalise_video_id(name)


def test_a_pending_file_with_an_invalid_id_no_longer_wedges_the_store(path, caplog):
    """Written by an older vadmil: the next writer drops it with a warning and commits the rest."""
    with FeatureStore.create(path, _recipe()) as s:
        s.append("v1", _x(1), n_frames=80, fps=30.0)
        with h5py.File(s.pending_dir / "bad.h5", "w") as f:
            writer._write_video(f, _x(2), {"video_id": "..", "n_frames": 80, "fps": 30.0})
        s._pending_index = None  # as a fresh writer would see the folder
    assert "dropping pending file" in caplog.text and "'..'" in caplog.text
    with FeatureStore(path) as s:
        assert s.ids() == ["v0", "v1"] and not s.pending_dir.exists()


def test_writing_through_a_symlink_updates_the_real_file_and_locks_it(path, tmp_path):
    link = tmp_path / "link.h5"
    link.symlink_to(path)
    with FeatureStore.create(link, _recipe()) as s:
        assert s.path == path
        with pytest.raises(VadmilError, match="being written by another process"):
            FeatureStore.create(path, _recipe())  # the lock is the real file's
        s.append("v1", _x(1), n_frames=80, fps=30.0)
    assert link.is_symlink() and link.resolve() == path
    assert not (tmp_path / "link.h5.lock").exists() and not (tmp_path / "link.h5.pending").exists()
    assert not (tmp_path / "link.h5.segments").exists() and (tmp_path / "s.h5.segments").is_dir()
    with FeatureStore(path) as s:
        assert s.ids() == ["v0", "v1"]
        np.testing.assert_array_equal(s.read("v1"), _x(1))


def test_the_partial_copy_of_a_killed_commit_is_removed_by_the_next_writer(path, caplog):
    partial = path.with_name(f".{path.name}.commit")
    partial.write_bytes(b"\0" * 4096)  # a commit killed while copying the store
    with FeatureStore.create(path, _recipe()):
        pass  # nothing pending: the writer still cleans up
    assert not partial.exists() and "partial copy" in caplog.text


def _free(n: int):
    usage = namedtuple("usage", "total used free")
    return lambda _: usage(10**12, 10**12 - n, n)


def test_a_full_disk_at_commit_is_one_line_and_loses_nothing(path, monkeypatch):
    published = _sha(path)
    s = FeatureStore.create(path, _recipe())
    s.append("v1", _x(1), n_frames=80, fps=30.0)
    monkeypatch.setattr(writer.shutil, "disk_usage", _free(1000))
    with pytest.raises(writer.NoSpaceError) as err:
        s.close()
    message = str(err.value)
    assert "\n" not in message and "not enough disk space for committing 1 video(s)" in message
    assert "it needs about" in message and "1000 B free" in message and "next writer commits them" in message
    assert _sha(path) == published and not path.with_name(f".{path.name}.commit").exists()
    with FeatureStore(path) as r:  # the appended video waits, readable
        assert r.ids() == ["v0", "v1"]
    monkeypatch.undo()
    with FeatureStore.create(path, _recipe()):
        pass
    with h5py.File(path, "r") as f:
        assert sorted(f["videos"]) == ["v0", "v1"]


def test_a_full_disk_at_append_writes_nothing(path, monkeypatch):
    with FeatureStore.create(path, _recipe()) as s:
        monkeypatch.setattr(writer.shutil, "disk_usage", _free(10))
        with pytest.raises(writer.NoSpaceError, match="not enough disk space for video 'v1'"):
            s.append("v1", _x(1), n_frames=80, fps=30.0)
        monkeypatch.undo()
        assert s.ids() == ["v0"] and not list(s.pending_dir.glob("*"))


def test_a_write_error_midway_through_a_commit_leaves_no_copy(path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    s = FeatureStore.create(path, _recipe())
    s.append("v1", _x(1), n_frames=80, fps=30.0)
    monkeypatch.setattr(writer, "_write_video", fail)
    with pytest.raises(writer.NoSpaceError, match="cannot commit 1 video.*No space left"):
        s.close()
    assert not path.with_name(f".{path.name}.commit").exists()

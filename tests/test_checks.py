"""Split checks at setup (vadmil/data/checks.py): shapes, finiteness, frame counts and intervals of every split,
before any training."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from vadmil.data.checks import check_split
from vadmil.data.datamodule import MILDataModule
from vadmil.data.labels import VideoLabel
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError


@pytest.fixture()
def store(tiny_data, tmp_path) -> FeatureStore:
    """A private copy of the tiny store (tests damage it)."""
    path = tmp_path / "s.h5"
    shutil.copy(tiny_data[0], path)
    return FeatureStore(path)


def abnormal(store, video_id, *intervals) -> dict[str, VideoLabel]:
    return {video_id: VideoLabel(video_id, 1, intervals)}


def test_intervals_past_the_end_are_clipped_with_one_warning(store, tiny_splits, caplog):
    _, _, test = tiny_splits
    a, b = [v for v, x in test.items() if x.label][:2]
    na, nb = store.n_frames(a), store.n_frames(b)
    videos = {a: VideoLabel(a, 1, ((0, 5), (na - 3, na + 50))), b: VideoLabel(b, 1, ((nb - 1, nb + 9),))}
    with caplog.at_level("WARNING", logger="vadmil.data"):
        checked = check_split(store, videos, "test")
    assert checked[a].intervals == ((0, 5), (na - 3, na - 1)) and checked[b].intervals == ((nb - 1, nb - 1),)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("2 anomalous interval(s) of 2 test video(s) run past")
    exclusive = check_split(store, {a: VideoLabel(a, 1, ((0, na + 1),))}, "test", end_inclusive=False)
    assert exclusive[a].intervals == ((0, na),)


def test_an_interval_wholly_past_the_end_names_the_video(store, tiny_splits):
    _, train, _ = tiny_splits
    v = next(v for v, x in train.items() if x.label)
    n = store.n_frames(v)
    with pytest.raises(
        VadmilError, match=f"training video '{v}': its anomalous interval {n}-{n + 10} starts past"
    ):
        check_split(store, abnormal(store, v, (0, 3), (n, n + 10)), "training")


def test_an_abnormal_test_video_without_an_anomalous_frame_is_an_error(store, tiny_splits):
    _, _, test = tiny_splits
    v = next(v for v, x in test.items() if x.label)
    with pytest.raises(VadmilError, match=f"abnormal test video '{v}' has no anomalous frame"):
        check_split(store, abnormal(store, v, (4, 4)), "test", end_inclusive=False)
    with pytest.raises(VadmilError, match=f"abnormal video {v} has no temporal annotation"):
        check_split(store, abnormal(store, v), "test")
    check_split(store, abnormal(store, v), "training")  # training labels are per video: no interval needed


@pytest.mark.parametrize("damage", ["nan", "crops", "dim", "no_frames", "empty"])
def test_a_damaged_test_video_stops_the_data_module_before_training(store, tiny_splits, damage):
    _, train, test = tiny_splits
    victim = sorted(test)[-1]
    store.close()
    with h5py.File(store.path, "a") as f:
        g = f["videos"][victim]
        x = g["features"][()]
        del g["features"]
        if damage == "nan":
            x[-1, 0, 0] = np.nan
        elif damage == "crops":
            x = x[:, :1]
        elif damage == "dim":
            x = x[..., :-1]
        elif damage == "empty":
            x = x[:0]
        else:
            del g.attrs["n_frames"]
        g["features"] = x
    message = {"nan": "NaN/Inf", "no_frames": "no frame count"}.get(damage, "features of shape")
    with pytest.raises(VadmilError, match=f"'{victim}' .*{message}|{message}.*'{victim}'"):
        MILDataModule(str(store.path), train, test)

"""MILDataModule: joining by id, splits, balanced batches, bag shapes, and its errors."""

from __future__ import annotations

import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
import torch

from vadmil.data.datamodule import BalancedBatchSampler, MILDataModule, stratified_split
from vadmil.data.labels import VideoLabel
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError


def make_dm(tiny_splits, **kw):
    store, train, test = tiny_splits
    args = dict(batch_size=4, val_fraction=0.2, n_segments=8)
    return MILDataModule(store=str(store), train=train, test=test, **{**args, **kw})


def test_balanced_sampler_batches_are_half_normal_half_abnormal_and_cycle_every_bag():
    labels = [0] * 7 + [1] * 3
    sampler = BalancedBatchSampler(labels, batch_size=4, num_batches=6, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        assert sorted(labels[i] for i in batch) == [0, 0, 1, 1]
    counts = Counter(i for b in batches for i in b)
    # 12 abnormal draws over 3 abnormal bags: each exactly 4 times; 12 normal draws over 7: 1 or 2 each.
    assert [counts[i] for i in range(7, 10)] == [4, 4, 4]
    assert all(counts[i] in (1, 2) for i in range(7))


def test_balanced_sampler_is_seeded_and_reshuffles_each_epoch():
    labels = [0] * 10 + [1] * 10
    a, b = BalancedBatchSampler(labels, 4, 5, seed=3), BalancedBatchSampler(labels, 4, 5, seed=3)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # second epoch: a new order


@pytest.mark.parametrize("batch_size", [0, 3])
def test_balanced_sampler_rejects_odd_batches(batch_size):
    with pytest.raises(VadmilError, match="even"):
        BalancedBatchSampler([0, 1], batch_size, 1)


def test_stratified_split_is_disjoint_keeps_both_classes_and_is_seeded():
    videos = {f"n{i}": VideoLabel(f"n{i}", 0) for i in range(20)} | {
        f"a{i}": VideoLabel(f"a{i}", 1) for i in range(10)
    }
    train, val = stratified_split(videos, 0.2, seed=0)
    assert not set(train) & set(val) and set(train) | set(val) == set(videos)
    assert sum(v.startswith("a") for v in val) == 2 and sum(v.startswith("n") for v in val) == 4
    assert stratified_split(videos, 0.2, seed=0) == (train, val)
    assert stratified_split(videos, 0.2, seed=1) != (train, val)


def test_stratified_split_needs_two_videos_per_class():
    videos = {"n0": VideoLabel("n0", 0), "n1": VideoLabel("n1", 0), "a0": VideoLabel("a0", 1)}
    with pytest.raises(VadmilError, match="1 abnormal video"):
        stratified_split(videos, 0.5, seed=0)


@pytest.mark.parametrize(("crops", "n_crops"), [("stack", 2), ("independent", 1)])
def test_train_batches_are_balanced_pooled_bags(tiny_splits, crops, n_crops):
    dm = make_dm(tiny_splits, crops=crops)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, n_crops, 8, 16)
    assert batch["mask"].shape == (4, 8) and batch["mask"].all()
    assert sorted(batch["label"].tolist()) == [0.0, 0.0, 1.0, 1.0]
    if crops == "independent":  # every (video, crop) pair is a bag
        assert len(dm.train_set) == 2 * len(dm.train_ids)


def test_cache_gives_the_same_bags_as_reading_lazily(tiny_splits):
    cached, lazy = make_dm(tiny_splits, cache=True), make_dm(tiny_splits, cache=False)
    cached.setup("fit"), lazy.setup("fit")
    for i in range(len(cached.train_set)):
        a, b = cached.train_set[i], lazy.train_set[i]
        assert a["video_id"] == b["video_id"] and torch.equal(a["x"], b["x"])


def test_short_videos_masked_when_asked(tiny_splits):
    dm = make_dm(tiny_splits, n_segments=64, short_videos="mask")  # every tiny video is shorter than 64
    dm.setup("fit")
    item = dm.train_set[0]
    n = FeatureStore(tiny_splits[0]).n_snippets(item["video_id"])
    assert item["mask"].sum() == n and not item["mask"][n:].any()
    assert torch.all(item["x"][:, n:] == 0)


def test_eval_loaders_give_full_length_padded_videos(tiny_splits):
    dm = make_dm(tiny_splits, eval_batch_size=3)
    store = FeatureStore(tiny_splits[0])
    seen = []
    for batch in dm.test_dataloader():
        for i, v in enumerate(batch["video_id"]):
            n = store.n_snippets(v)
            assert int(batch["mask"][i].sum()) == n
            np.testing.assert_array_equal(batch["x"][i, :, :n].numpy(), store.read(v).transpose(1, 0, 2))
            seen.append(v)
    assert sorted(seen) == sorted(tiny_splits[2])
    val_ids = [v for b in dm.val_dataloader() for v in b["video_id"]]
    assert sorted(val_ids) == dm.val_ids and not set(val_ids) & set(dm.train_ids)


def test_workers_read_the_store_lazily(tiny_splits):
    dm = make_dm(tiny_splits, num_workers=2, cache=False, eval_batch_size=2)
    ids = [v for b in dm.test_dataloader() for v in b["video_id"]]
    assert sorted(ids) == sorted(tiny_splits[2])
    assert next(iter(dm.train_dataloader()))["x"].shape == (4, 2, 8, 16)


def test_annotation_ids_missing_from_the_store_are_listed(tiny_splits):
    store, train, test = tiny_splits
    test = {**test, "ghost_1": VideoLabel("ghost_1", 1, ((0, 5),)), "ghost_2": VideoLabel("ghost_2", 0)}
    with pytest.raises(VadmilError, match=r"2 test video\(s\).*ghost_1, ghost_2"):
        MILDataModule(store=str(store), train=train, test=test)


def test_a_video_in_both_splits_is_an_error(tiny_splits):
    store, train, test = tiny_splits
    some = next(iter(train))
    with pytest.raises(VadmilError, match=f"both the training and test.*{some}"):
        MILDataModule(store=str(store), train=train, test={**test, some: train[some]})


def test_test_split_without_abnormal_videos_is_an_error(tiny_splits):
    store, train, test = tiny_splits
    normal_only = {k: v for k, v in test.items() if v.label == 0}
    with pytest.raises(VadmilError, match="test split has no abnormal video"):
        MILDataModule(store=str(store), train=train, test=normal_only)


def test_feature_dim_mismatch_names_both_values(tiny_splits):
    with pytest.raises(VadmilError, match="16-d features but the config expects 2048-d"):
        make_dm(tiny_splits, feature_dim=2048)


def test_nan_features_are_reported_with_the_video_id(tiny_splits, tmp_path):
    store, train, test = tiny_splits
    broken = tmp_path / "broken.h5"
    shutil.copy(store, broken)
    victim = sorted(train)[0]
    with h5py.File(broken, "a") as f:
        f["videos"][victim]["features"][1, 0, 3] = np.nan
    with pytest.raises(VadmilError, match=f"'{victim}'.*NaN/Inf"):  # found when the module is built
        MILDataModule(store=str(broken), train=train, test=test, batch_size=4, val_fraction=0.2, split_seed=0)

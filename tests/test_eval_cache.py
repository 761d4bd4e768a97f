"""The validation cache: read once within the memory budget, identical batches and scores, reading when over."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadmil.data.datamodule import MILDataModule
from vadmil.data.eval_cache import padded_size
from vadmil.data.loaders import FullVideos
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import predict_snippet_scores
from vadmil.heads.fcn import FCNHead
from vadmil.training.module import MILModule


def make_dm(tiny_splits, **kw) -> MILDataModule:
    store, train, test = tiny_splits
    args = dict(batch_size=4, val_fraction=0.3, n_segments=8, eval_batch_size=3, normalise="segment_l2")
    return MILDataModule(store=str(store), train=train, test=test, **{**args, **kw})


def count_reads(monkeypatch) -> list[str]:
    """The ids every FullVideos item read, in order."""
    reads, getitem = [], FullVideos.__getitem__

    def counted(self, index):
        reads.append(self.ids[index])
        return getitem(self, index)

    monkeypatch.setattr(FullVideos, "__getitem__", counted)
    return reads


def test_padded_size_is_what_the_loader_yields(tiny_splits):
    dm = make_dm(tiny_splits)
    rows, nbytes = dm.val_size()
    batches = list(dm.eval_loader(dm.val_ids, dm.train_videos))
    assert nbytes == sum(b["x"].numel() * b["x"].element_size() for b in batches)
    assert rows == sum(b["x"].shape[0] * b["x"].shape[1] * b["x"].shape[2] for b in batches)
    assert padded_size(dm.store, [], 3) == (0, 0)


def test_validation_features_are_read_once_within_the_budget(tiny_splits, monkeypatch):
    reads = count_reads(monkeypatch)
    dm = make_dm(tiny_splits)
    assert dm.val_cached()
    loader = dm.val_dataloader()
    first, second, third = list(loader), list(loader), list(loader)
    assert reads == dm.val_ids  # one read per video, in the first validation only
    assert len(first) == len(loader) == len(second)
    for a, b, c in zip(first, second, third, strict=True):
        assert a["video_id"] == b["video_id"] == c["video_id"]
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["mask"], c["mask"])


def test_over_the_budget_every_validation_reads(tiny_splits, monkeypatch):
    reads = count_reads(monkeypatch)
    dm = make_dm(tiny_splits, val_cache_mb=dm_bytes_mb(tiny_splits) / 2)
    assert not dm.val_cached()
    loader = dm.val_dataloader()
    list(loader), list(loader)
    assert reads == dm.val_ids * 2
    dm_off = make_dm(tiny_splits, val_cache_mb=0)
    assert not dm_off.val_cached()


def dm_bytes_mb(tiny_splits) -> float:
    return make_dm(tiny_splits).val_size()[1] / 2**20


def test_an_interrupted_first_pass_is_not_kept(tiny_splits, monkeypatch):
    reads = count_reads(monkeypatch)
    dm = make_dm(tiny_splits)
    loader = dm.val_dataloader()
    next(iter(loader))
    assert loader.batches is None
    assert len(list(loader)) == len(loader) and loader.batches is not None
    assert len(reads) == 3 + len(dm.val_ids)  # the interrupted batch of 3, then one complete pass


def test_cached_validation_scores_equal_reading_scores(tiny_splits):
    torch.manual_seed(0)
    dm = make_dm(tiny_splits)
    module = MILModule(FCNHead(dm.feature_dim, dropout=0.0))
    cached = dm.val_dataloader()
    list(cached)  # the first validation fills the cache
    from_cache = predict_snippet_scores(module, cached)
    read = predict_snippet_scores(module, dm.eval_loader(dm.val_ids, dm.train_videos))
    assert from_cache.keys() == read.keys()
    assert all(np.array_equal(from_cache[v], read[v]) for v in read)


def test_averaging_crops_before_the_head_would_change_scores():
    """Why validation scores every crop: the mean of sigmoid scores is not the score of the mean feature."""
    torch.manual_seed(0)
    module = MILModule(FCNHead(8, dropout=0.0)).eval()
    x, mask = torch.randn(2, 5, 7, 8), torch.ones(2, 7, dtype=torch.bool)
    per_crop = module(x, mask).video_scores
    averaged_first = module(x.mean(1, keepdim=True), mask).video_scores
    assert not torch.allclose(per_crop, averaged_first, atol=1e-4)


def test_a_cached_pass_leaves_the_random_stream_as_a_reading_pass(tiny_splits):
    """Iterating a DataLoader draws from torch's global generator; training (dropout, shuffling) must continue
    from the same state whether validation read its batches or took them from the cache."""
    dm = make_dm(tiny_splits)
    cached, read = dm.val_dataloader(), dm.eval_loader(dm.val_ids, dm.train_videos)
    list(cached)
    torch.manual_seed(0)
    list(read)
    after_read = torch.get_rng_state()
    torch.manual_seed(0)
    list(cached)
    assert cached.batches is not None and torch.equal(torch.get_rng_state(), after_read)


@pytest.mark.parametrize("budget", [-1, "lots", True])
def test_a_bad_budget_fails_clearly(tiny_splits, budget):
    with pytest.raises(VadmilError, match="data.val_cache_mb=.*MiB ≥ 0"):
        make_dm(tiny_splits, val_cache_mb=budget)

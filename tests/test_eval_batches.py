"""Length-batched test scoring: budgets respected, every video once, and scores equal to the unbatched path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.data.datamodule import MILDataModule
from vadmil.data.eval_batches import LengthBatches, length_batched_loader, padded_rows
from vadmil.data.loaders import video_loader
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import predict_snippet_scores
from vadmil.training.module import MILModule

from .test_head_configs import CONF


def test_batches_are_sorted_complete_and_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=50).tolist() + [200]  # the last is longer than the budget alone
    batches = list(LengthBatches(lengths, max_rows=3 * 100, crops=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    order = [lengths[i] for b in batches for i in b]
    assert order == sorted(lengths, reverse=True)
    assert batches[0] == [50]  # over the budget: a batch of its own, first
    for b in batches[1:]:
        assert len(b) * 3 * max(lengths[i] for i in b) <= 300
        assert min(lengths[i] for i in b) >= 0.75 * max(lengths[i] for i in b)  # padding under a quarter
    # far less padding than batches of 8 in list order, and never more rows than it has to
    in_order = [list(range(i, min(i + 8, len(lengths)))) for i in range(0, len(lengths), 8)]
    assert padded_rows(lengths, batches, 3) < padded_rows(lengths, in_order, 3)
    assert padded_rows(lengths, batches, 3) >= 3 * sum(lengths)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "many"])
def test_a_bad_row_budget_is_a_clear_error(bad):
    with pytest.raises(VadmilError, match="data.eval_batch_rows"):
        LengthBatches([3, 4], max_rows=bad)


def _module(name: str, dim: int) -> MILModule:
    torch.manual_seed(0)
    head = instantiate(OmegaConf.load(CONF / "model" / "head" / f"{name}.yaml"), in_dim=dim)
    module = MILModule(head)
    module.eval()
    for m in module.modules():  # non-trivial batch-norm statistics, so that eval-mode BN matters
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return module


@pytest.mark.parametrize("name", ["fcn", "gcn", "rtfm", "dted", "urdmu", "mgfn"])
def test_length_batched_scores_equal_the_unbatched_ones(tiny_splits, name):
    """Videos of different lengths batched together score as when each is scored alone (no padding at all) and
    as in the list-order batches used before."""
    store, train, test = tiny_splits
    dm = MILDataModule(store=str(store), train=train, test=test, eval_batch_rows=2 * 40 * 3)
    ids = dm.test_ids
    lengths = [dm.store.n_snippets(v) for v in ids]
    assert len(set(lengths)) > 3
    module = _module(name, dm.feature_dim)
    batched = dm.test_dataloader()
    assert any(len(set(lengths[i] for i in b)) > 1 for b in batched.batch_sampler)  # mixed lengths batched
    alone = predict_snippet_scores(module, video_loader(dm.store, dm.test_videos, ids, "none", batch_size=1))
    before = predict_snippet_scores(module, video_loader(dm.store, dm.test_videos, ids, "none", batch_size=4))
    after = predict_snippet_scores(module, batched)
    assert set(after) == set(alone) == set(ids)
    for v in ids:
        assert after[v].shape == (dm.store.n_snippets(v),)
        np.testing.assert_allclose(after[v], alone[v], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(after[v], before[v], rtol=1e-5, atol=1e-6)


def test_the_loader_yields_each_video_once_with_its_own_length(tiny_splits):
    store, train, test = tiny_splits
    dm = MILDataModule(store=str(store), train=train, test=test)
    loader = length_batched_loader(dm.store, dm.test_videos, dm.test_ids, "none", max_rows=100)
    seen = []
    for batch in loader:
        assert batch["x"].shape[0] * batch["x"].shape[1] * batch["x"].shape[2] <= max(
            100, dm.store.n_crops * batch["x"].shape[2]
        )
        for i, v in enumerate(batch["video_id"]):
            assert int(batch["mask"][i].sum()) == dm.store.n_snippets(v)
            assert batch["label"][i] == dm.test_videos[v].label
            seen.append(v)
    assert sorted(seen) == sorted(dm.test_ids)

"""Feature standardisation: training-split statistics, applied inside the model, carried by the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadmil.training.standardise import FeatureStandardiser, feature_statistics
from vadmil.training.train import make_datamodule


def test_statistics_pool_every_snippet_and_crop():
    rng = np.random.default_rng(0)
    videos = [rng.normal(3.0, 2.0, size=(t, 2, 5)).astype(np.float32) for t in (4, 9, 1)]
    mean, std = feature_statistics(videos)
    flat = np.concatenate([v.reshape(-1, 5) for v in videos])
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, flat.std(0), rtol=1e-4)
    const = [np.ones((3, 1, 2), np.float32)]
    assert feature_statistics(const)[1].tolist() == [1.0, 1.0]  # constant dims are not blown up


def test_standardiser_zeroes_padding():
    layer = FeatureStandardiser(3)
    layer.set_statistics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    x = torch.ones(1, 2, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    y = layer(x, mask)
    assert torch.allclose(y[0, :, :2], torch.tensor([0.0, -0.5, -1.0]).expand(2, 2, 3))
    assert torch.all(y[0, :, 2:] == 0)


def test_datamodule_statistics_use_training_videos_only(tiny_splits):
    from omegaconf import OmegaConf

    store, train, test = tiny_splits
    cfg = OmegaConf.create({"dataset": {"store": str(store), "feature_dim": None},
                            "data": {"standardise": True, "val_fraction": 0.2, "batch_size": 4},
                            "eval": {"end_inclusive": True, "frame_span": "video"}})  # fmt: skip
    dm = make_datamodule(cfg, train, test)
    mean, _ = dm.feature_statistics()
    expected = np.concatenate([dm.store.read(v).reshape(-1, dm.feature_dim) for v in dm.train_ids]).mean(0)
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-6)
    with_val = np.concatenate(
        [dm.store.read(v).reshape(-1, dm.feature_dim) for v in [*dm.train_ids, *dm.val_ids]]
    )
    assert not np.allclose(mean, with_val.mean(0), atol=1e-6)
    assert not set(dm.val_ids) & set(dm.train_ids)


@pytest.mark.parametrize("standardise", [True, False])
def test_checkpoint_carries_the_statistics(tiny_data, tmp_path, standardise):
    """`vadmil eval` of a standardised run reproduces its test metrics: the statistics travel in the checkpoint."""
    import json

    from tests.conftest import run_vadmil
    from vadmil.evaluation.evaluate import evaluate_run
    from vadmil.rundir import load_checkpoint

    store, manifest = tiny_data
    r = run_vadmil("train", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
                   f"data.standardise={str(standardise).lower()}", "trainer.max_steps=6", "data.batch_size=4",
                   "data.batches_per_epoch=3", "oracle.every=0", "trainer.enable_progress_bar=false",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/best.ckpt")
    assert ("standardiser.mean" in ckpt["state_dict"]) == standardise
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    again = evaluate_run(tmp_path / "run")
    assert again["test"]["frame_auc"] == pytest.approx(metrics["test"]["frame_auc"], abs=1e-6)

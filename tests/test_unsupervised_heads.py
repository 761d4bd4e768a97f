"""The unsupervised heads (kNN, Gaussian, feature autoencoder, next-feature predictor): each against a plain
reference computation, each separating a planted anomaly, the score calibration, and training through
`train()` on normal videos only (abnormal training videos cannot change the model) with a weights-only
checkpoint round trip."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf
from sklearn.metrics import roc_auc_score

from tests.conftest import TINY_OVERRIDES
from vadmil.commands.base import config_dir
from vadmil.data.annotations import load_manifest
from vadmil.errors import VadmilError
from vadmil.heads.feature_ae import FeatureAEHead
from vadmil.heads.feature_predictor import FeaturePredictorHead
from vadmil.heads.gaussian import GaussianHead, ledoit_wolf
from vadmil.heads.knn import KNNHead
from vadmil.heads.normality import ScoreCalibration
from vadmil.heads.output import HeadOutput
from vadmil.losses.normal import NormalErrorLoss
from vadmil.rundir import RunDir, load_finished_run
from vadmil.training.train import train

D = 8


def _normal(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    cov_root = torch.randn(D, D, generator=g) * 0.3 + torch.eye(D)
    return torch.randn(n, D, generator=g) @ cov_root + 1.0


def _fit(head, x, chunk=37):
    head.fit_normal(lambda: list(x.split(chunk)))
    return head


# ---- reference computations ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_knn_is_the_mean_distance_to_the_k_nearest_normal_snippets(metric):
    bank, queries = _normal(200), _normal(30, seed=1)
    head = _fit(KNNHead(D, k=3, metric=metric, chunk=7), bank)
    b, q = bank.double().numpy(), queries.double().numpy()
    if metric == "cosine":
        b, q = b / np.linalg.norm(b, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
        dist = 1 - q @ b.T
    else:
        dist = np.sqrt(((q[:, None] - b[None]) ** 2).sum(-1))
    expected = np.sort(dist, axis=1)[:, :3].mean(1)
    raw = head.raw_scores(queries.reshape(3, 10, D), None).reshape(-1)
    np.testing.assert_allclose(raw.numpy(), expected, atol=1e-4)


def test_knn_bank_is_a_seeded_uniform_subset_when_capped():
    x = _normal(500)
    a, b = (
        _fit(KNNHead(D, metric="l2", max_bank=64, seed=3), x),
        _fit(KNNHead(D, metric="l2", max_bank=64, seed=3), x),
    )
    assert a.bank.shape == (64, D) and torch.equal(a.bank, b.bank)
    rows = {tuple(r.tolist()) for r in x}
    assert all(tuple(r.tolist()) in rows for r in a.bank)


def test_ledoit_wolf_matches_scikit_learn():
    x = _normal(300).double()
    c = x - x.mean(0)
    shrinkage = ledoit_wolf(len(x), c.T @ c, float(((c * c).sum(1) ** 2).sum()))
    _, expected = sk_ledoit_wolf(x.numpy())
    assert shrinkage == pytest.approx(expected, rel=1e-6)
    head = _fit(GaussianHead(D), x.float())
    assert float(head.shrinkage) == pytest.approx(expected, rel=1e-5)


def test_gaussian_is_the_squared_mahalanobis_distance_under_the_fitted_covariance():
    x, queries = _normal(400), _normal(20, seed=2)
    head = _fit(GaussianHead(D, shrinkage=0.0), x)
    xd = x.double().numpy()
    mean, cov = xd.mean(0), np.cov(xd, rowvar=False, bias=True)
    c = queries.double().numpy() - mean
    expected = np.einsum("nd,de,ne->n", c, np.linalg.inv(cov), c)
    np.testing.assert_allclose(head.raw_scores(queries[None], None)[0].numpy(), expected, rtol=1e-4)


def test_gaussian_shrinkage_value_is_checked():
    with pytest.raises(VadmilError, match="shrinkage"):
        GaussianHead(D, shrinkage=2.0)


def test_autoencoder_error_is_the_mean_squared_reconstruction_error():
    head = FeatureAEHead(D, hidden=(6, 3)).eval()
    x = torch.randn(2, 5, D)
    manual = ((head.decoder(head.encoder(x)) - x) ** 2).mean(-1)
    torch.testing.assert_close(head(x).raw, manual)


def test_predictor_error_uses_only_the_past():
    torch.manual_seed(0)
    head = FeaturePredictorHead(D, context=3, hidden=5).eval()
    x = torch.randn(1, 9, D)
    torch.set_grad_enabled(False)
    try:
        _check_predictor(head, x)
    finally:
        torch.set_grad_enabled(True)


def _check_predictor(head, x):
    raw = head(x).raw[0]
    w1, b1, w2, b2 = head.past.weight, head.past.bias, head.out.weight[..., 0], head.out.bias
    for t in range(9):
        past = torch.stack(
            [x[0, max(s, 0)] for s in range(t - 3, t)], dim=1
        )  # [D, 3], first snippet repeated
        pred = w2 @ torch.relu((w1 * past).sum((1, 2)) + b1) + b2
        assert raw[t] == pytest.approx(float(((pred - x[0, t]) ** 2).mean()), rel=1e-4)
    y = x.clone()
    y[0, 6:] += 10.0  # the future never changes earlier scores
    torch.testing.assert_close(head(y).raw[0, :6], raw[:6])


# ---- calibration ---------------------------------------------------------------------------------------------------
def test_calibration_maps_the_normal_quantile_to_one_half_and_keeps_the_order():
    raw = torch.randn(10_000).exp()
    cal = ScoreCalibration(quantile=0.9)
    cal.fit(raw)
    scores = torch.sigmoid(cal(raw))
    assert float((scores > 0.5).float().mean()) == pytest.approx(0.1, abs=0.005)  # FAR at 0.5 ≈ 1 - quantile
    order = raw.argsort()
    assert (scores[order].diff() >= 0).all()
    cal.fit(torch.full((5,), 3.0))  # constant scores: still a finite, increasing map
    assert torch.isfinite(cal(torch.tensor([2.0, 4.0]))).all() and float(cal.scale) > 0


# ---- each head separates a planted anomaly ------------------------------------------------------------------------
def _train_error_head(head, x, steps=300):
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    batch = {"label": torch.zeros(len(x)), "mask": torch.ones(x.shape[:2], dtype=torch.bool)}
    loss = NormalErrorLoss()
    for _ in range(steps):
        out = head(x)
        value = loss(HeadOutput(scores=out.scores[:, None], raw=out.raw[:, None]), batch)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return head.eval()


def _sequences(n, t, seed):
    """Smooth normal sequences [n, t, D] (AR(1)) whose features lie near a 2-d subspace."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(2, D, generator=torch.Generator().manual_seed(99))
    z = torch.zeros(n, t, 2)
    for i in range(1, t):
        z[:, i] = 0.9 * z[:, i - 1] + 0.3 * torch.randn(n, 2, generator=g)
    return z @ basis + 0.05 * torch.randn(n, t, D, generator=g)


@pytest.mark.parametrize("name", ["knn", "gaussian", "feature_ae", "feature_predictor"])
def test_each_head_separates_a_planted_anomaly(name):
    torch.manual_seed(0)
    train, test = _sequences(20, 24, 0), _sequences(6, 24, 1)
    labels = torch.zeros(6, 24)
    test[:3, 10:15] += 2.0 * torch.randn(
        D, generator=torch.Generator().manual_seed(5)
    )  # off the normal subspace
    labels[:3, 10:15] = 1
    if name == "knn":
        head = _fit(KNNHead(D, k=3, metric="l2"), train.reshape(-1, D))
    elif name == "gaussian":
        head = _fit(GaussianHead(D), train.reshape(-1, D))
    elif name == "feature_ae":
        head = _train_error_head(FeatureAEHead(D, hidden=(16, 2)), train)
    else:
        head = _train_error_head(FeaturePredictorHead(D, context=2, hidden=16), train)
    with torch.no_grad():
        head.calibration.fit(head(_sequences(4, 24, 2)).raw)
        scores = head(test).scores
    assert roc_auc_score(labels.reshape(-1).numpy(), scores.reshape(-1).numpy()) > 0.8
    assert float((scores[3:] > 0.5).float().mean()) < 0.2  # few false alarms on normal sequences


def test_normal_error_loss_refuses_abnormal_bags():
    out = HeadOutput(scores=torch.rand(2, 1, 4), raw=torch.rand(2, 1, 4))
    with pytest.raises(VadmilError, match="abnormal"):
        NormalErrorLoss()(
            out, {"label": torch.tensor([0.0, 1.0]), "mask": torch.ones(2, 4, dtype=torch.bool)}
        )


# ---- through train(): normal videos only, checkpoint round trip ---------------------------------------------------
def _train(model, store, manifest, run_dir, *extra):
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("dataset.prepare.")]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", [f"model={model}", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
                                "~dataset.prepare", "oracle.every=0", *overrides, *extra])  # fmt: skip
    run_dir.mkdir(parents=True)
    return train(cfg, run_dir)


@pytest.mark.parametrize("model", ["knn", "gaussian", "feature_ae", "feature_predictor"])
def test_abnormal_training_videos_never_change_the_model(tiny_data, tmp_path, model):
    store, manifest = tiny_data
    poisoned = tmp_path / "poisoned.h5"
    shutil.copy(store, poisoned)
    abnormal = [v for v, lab in load_manifest(str(manifest), "train").items() if lab.label == 1]
    with h5py.File(poisoned, "r+") as f:
        for v in abnormal:
            x = f["videos"][v]["features"]
            x[...] = np.random.default_rng(0).normal(50.0, 9.0, x.shape).astype(x.dtype)
    steps = ["trainer.max_steps=6"]
    clean = _train(model, store, manifest, tmp_path / "clean", *steps)
    dirty = _train(model, poisoned, manifest, tmp_path / "dirty", *steps)
    assert clean["supervision"] == dirty["supervision"] == "none"
    assert "normal videos only" in clean["supervision_note"]
    a, b = (load_finished_run(tmp_path / r).checkpoint["state_dict"] for r in ("clean", "dirty"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert clean["test"] == dirty["test"]


@pytest.mark.parametrize("model", ["knn", "feature_predictor"])
def test_checkpoint_round_trip_reproduces_the_test_scores(tiny_data, tmp_path, model):
    store, manifest = tiny_data
    metrics = _train(model, store, manifest, tmp_path / "run", "trainer.max_steps=4")
    run = load_finished_run(tmp_path / "run")  # weights_only loading
    module = run.module(metrics["features"]["feature_dim"])
    if model == "knn":
        assert module.head.bank.shape[0] > 0 and float(module.head.calibration.scale) != 1.0
    with np.load(RunDir(tmp_path / "run").predictions) as saved:
        key = next(k for k in saved.files if k.startswith("snippet_scores/"))
        video = key.split("/", 1)[1]
        from vadmil.data.store import FeatureStore

        x = torch.from_numpy(FeatureStore(store).read(video)).permute(1, 0, 2)[None]
        with torch.no_grad():
            scores = module(x, torch.ones(1, x.shape[2], dtype=torch.bool)).video_scores[0]
        np.testing.assert_allclose(scores.numpy(), saved[key], atol=1e-5)
    assert "normal_only: true" in (tmp_path / "run" / "config.yaml").read_text()

"""Test-time scoring: frame expansion from the store's geometry, frame metrics, per-video snippet scores."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import VideoLabel
from vadmil.data.loaders import FullVideos, collate_videos
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import evaluate_frames, frame_scores, predict_snippet_scores
from vadmil.heads.fcn import FCNHead
from vadmil.training.module import MILModule

D, C = 6, 2
GEOMETRIES = [
    SnippetGeometry(16, 16, "drop"),
    SnippetGeometry(8, 8, "pad_last"),
    SnippetGeometry(16, 8, "drop"),
]
# id → (n_frames, label, intervals as the annotation writes them, end inclusive)
VIDEOS = {
    "abnormal_a": (100, 1, ((20, 47),)),
    "abnormal_b": (83, 1, ((0, 9), (60, 70))),
    "normal_a": (130, 0, ()),
    "normal_b": (37, 0, ()),
}


def _make_store(path, geometry, videos=VIDEOS, pooled=False, n_segments=32):
    store = FeatureStore.create(
        path, make_recipe(backbone="test", feature_dim=D, n_crops=C, geometry=geometry, pooled=pooled)
    )
    rng = np.random.default_rng(0)
    for vid, (n_frames, *_) in videos.items():
        t = n_segments if pooled else geometry.n_snippets(n_frames)
        store.append(vid, rng.standard_normal((t, C, D)).astype(np.float32), n_frames=n_frames, fps=25.0)
    return store


def _labels():
    return {vid: VideoLabel(vid, label, intervals) for vid, (_, label, intervals) in VIDEOS.items()}


def _random_scores(store, seed=0):
    rng = np.random.default_rng(seed)
    return {v: rng.random(store.n_snippets(v)).astype(np.float32) for v in store.ids()}


# ---- hand expansion ------------------------------------------------------------------------------------------------
def _hand_frames(scores, geometry, n_frames, span):
    """Each frame takes the mean of the snippets covering it; uncovered frames take the last snippet before them."""
    t = len(scores)
    if span == "snippets":
        return [float(scores[i]) for i in range(t) for _ in range(geometry.stride)]
    out = []
    for f in range(n_frames):
        covering = [i for i in range(t) if i * geometry.stride <= f < i * geometry.stride + geometry.length]
        if not covering:
            covering = [min(f // geometry.stride, t - 1)]
        out.append(sum(float(scores[i]) for i in covering) / len(covering))
    return out


def _hand_labels(intervals, n, end_inclusive):
    return [int(any(s <= f <= e - (not end_inclusive) for s, e in intervals)) for f in range(n)]


# ---- frame_scores ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_video_span_covers_every_decoded_frame(tmp_path, geometry):
    with _make_store(tmp_path / "s.h5", geometry) as store:
        for vid, scores in _random_scores(store).items():
            n_frames = store.n_frames(vid)
            frames = frame_scores(store, vid, scores, "video")
            assert frames.shape == (n_frames,)
            torch.testing.assert_close(frames, geometry.expand(scores, n_frames))
            np.testing.assert_allclose(
                frames.numpy(), _hand_frames(scores, geometry, n_frames, "video"), rtol=1e-6
            )


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_snippet_span_repeats_each_score_stride_times(tmp_path, geometry):
    with _make_store(tmp_path / "s.h5", geometry) as store:
        for vid, scores in _random_scores(store).items():
            frames = frame_scores(store, vid, scores, "snippets")
            assert frames.shape == (len(scores) * geometry.stride,)
            for i, s in enumerate(scores):
                chunk = frames[i * geometry.stride : (i + 1) * geometry.stride]
                assert torch.equal(chunk, torch.full_like(chunk, float(s)))


def test_default_span_is_video(tmp_path):
    geometry = SnippetGeometry(16, 16, "drop")
    with _make_store(tmp_path / "s.h5", geometry) as store:
        scores = _random_scores(store)["abnormal_a"]
        assert torch.equal(
            frame_scores(store, "abnormal_a", scores), frame_scores(store, "abnormal_a", scores, "video")
        )
        assert len(frame_scores(store, "abnormal_a", scores)) == 100  # 6 snippets of 16 frames, 4 tail frames


@pytest.mark.parametrize("n_frames", [1000, 45, 31])
def test_pooled_store_spreads_segments_over_the_video(tmp_path, n_frames):
    videos = {"v": (n_frames, 1, ((0, 5),))}
    with _make_store(tmp_path / "p.h5", SnippetGeometry(), videos=videos, pooled=True) as store:
        assert store.pooled
        scores = np.random.default_rng(1).random(32).astype(np.float32)
        frames = frame_scores(store, "v", scores, "video")
        assert frames.shape == (n_frames,)
        bounds = [int(k * n_frames / 32) for k in range(33)]  # linspace(0, F, 33) truncated
        for f in range(n_frames):
            seg = max(i for i in range(32) if bounds[i] <= f)  # the segment [b_i, b_{i+1}) holding frame f
            assert float(frames[f]) == pytest.approx(float(scores[seg])), f


@pytest.mark.parametrize("span", ["frames", "", "VIDEO"])
def test_invalid_frame_span_raises(tmp_path, span):
    with _make_store(tmp_path / "s.h5", SnippetGeometry()) as store:
        scores = _random_scores(store)["normal_a"]
        with pytest.raises(VadmilError, match="frame_span"):
            frame_scores(store, "normal_a", scores, span)


# ---- evaluate_frames -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("end_inclusive", [True, False])
@pytest.mark.parametrize("span", ["video", "snippets"])
def test_evaluate_frames_equals_sklearn_on_hand_expanded_frames(tmp_path, geometry, end_inclusive, span):
    with _make_store(tmp_path / "s.h5", geometry) as store:
        scores = _random_scores(store, seed=3)
        labels = _labels()
        result = evaluate_frames(store, labels, scores, end_inclusive=end_inclusive, frame_span=span)
        all_scores, all_labels, normal_scores = [], [], []
        for vid, (n_frames, label, intervals) in VIDEOS.items():
            frames = _hand_frames(scores[vid], geometry, n_frames, span)
            all_scores += frames
            all_labels += _hand_labels(intervals, len(frames), end_inclusive)
            normal_scores += frames if label == 0 else []
        assert result["frame_auc"] == pytest.approx(roc_auc_score(all_labels, all_scores), abs=1e-6)
        assert result["far"] == pytest.approx(np.mean(np.asarray(normal_scores) >= 0.5), abs=1e-9)
        assert result["n_frames"] == len(all_scores)
        assert result["n_videos"] == 4 and result["n_abnormal_videos"] == 2


def test_evaluate_frames_end_inclusive_matters(tmp_path):
    # Scores that rank exactly the inclusive annotation above everything else: only end_inclusive=True gives 1.0.
    geometry = SnippetGeometry(1, 1, "drop")
    videos = {"a": (10, 1, ((3, 5),)), "n": (10, 0, ())}
    with _make_store(tmp_path / "s.h5", geometry, videos=videos) as store:
        labels = {v: VideoLabel(v, lab, iv) for v, (_, lab, iv) in videos.items()}
        a = np.zeros(10, dtype=np.float32)
        a[3:6] = 0.9
        scores = {"a": a, "n": np.zeros(10, dtype=np.float32)}
        assert evaluate_frames(store, labels, scores, end_inclusive=True)["frame_auc"] == pytest.approx(1.0)
        assert evaluate_frames(store, labels, scores, end_inclusive=False)["frame_auc"] < 1.0


# ---- predict_snippet_scores ----------------------------------------------------------------------------------------
def test_predict_snippet_scores_drops_padding_and_averages_crops(tmp_path):
    geometry = SnippetGeometry(16, 16, "drop")
    with _make_store(tmp_path / "s.h5", geometry) as store:
        labels = _labels()
        ids = store.ids()
        loader = DataLoader(
            FullVideos(store, labels, ids, "none"), batch_size=3, shuffle=False, collate_fn=collate_videos
        )
        torch.manual_seed(0)
        module = MILModule(FCNHead(D)).train()
        out = predict_snippet_scores(module, loader)
        assert not module.training  # scoring runs in eval mode (no dropout)
        assert sorted(out) == ids
        for vid in ids:
            assert isinstance(out[vid], np.ndarray) and out[vid].dtype == np.float32
            assert out[vid].shape == (store.n_snippets(vid),)
            x = torch.from_numpy(store.read(vid))  # [T, C, D], scored alone: no padding at all
            with torch.no_grad():
                per_crop = [module.head(x[:, k][None]).scores[0] for k in range(C)]
            np.testing.assert_allclose(out[vid], (sum(per_crop) / C).numpy(), rtol=1e-5, atol=1e-6)
        lengths = {store.n_snippets(v) for v in ids}
        assert len(lengths) > 1  # the batches really were padded
        # deterministic: a second pass gives the same scores
        again = predict_snippet_scores(module, loader)
        assert all(np.array_equal(out[v], again[v]) for v in ids)

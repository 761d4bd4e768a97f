"""vadmil.evaluation.metrics against scikit-learn on the conventions of docs/methods.md §2."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from vadmil.errors import VadmilError
from vadmil.evaluation.metrics import FrameAnomalyMetrics, VideoAUC

TOL = 1e-6
KEYS = ("frame_auc", "frame_ap_step", "frame_ap_trapz", "frame_auc_abnormal", "far")


@pytest.fixture(autouse=True)
def _quiet():
    # torchmetrics warns when compute() runs before update(); some tests do that on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _reference(videos, threshold=0.5):
    """sklearn reference for a list of (scores [F], labels [F], video_label); NaN where undefined."""
    s = np.concatenate([np.asarray(v[0], dtype=np.float64) for v in videos])
    y = np.concatenate([np.asarray(v[1]) for v in videos])
    vl = np.concatenate([np.full(len(v[0]), v[2]) for v in videos])
    both = 0 < y.sum() < len(y)
    ref = {"frame_auc": math.nan, "frame_ap_step": math.nan, "frame_ap_trapz": math.nan}
    if both:
        p, r, _ = precision_recall_curve(y, s)
        ref = {
            "frame_auc": roc_auc_score(y, s),
            "frame_ap_step": average_precision_score(y, s),
            "frame_ap_trapz": auc(r, p),
        }
    ya, sa = y[vl == 1], s[vl == 1]
    ref["frame_auc_abnormal"] = roc_auc_score(ya, sa) if 0 < ya.sum() < len(ya) else math.nan
    ref["far"] = float((s[vl == 0] >= threshold).mean()) if (vl == 0).any() else math.nan
    return ref


def _run(videos, threshold=0.5):
    m = FrameAnomalyMetrics(threshold=threshold)
    for scores, labels, video_label in videos:
        m.update(torch.as_tensor(scores), torch.as_tensor(labels), video_label)
    return m.compute()


def _assert_matches(videos, threshold=0.5):
    out, ref = _run(videos, threshold), _reference(videos, threshold)
    for k in KEYS:
        if math.isnan(ref[k]):
            assert math.isnan(out[k]), (k, out[k])
        else:
            assert out[k] == pytest.approx(ref[k], abs=TOL), k
    assert out["n_videos"] == len(videos)
    assert out["n_abnormal_videos"] == sum(v[2] for v in videos)
    assert out["n_frames"] == sum(len(v[0]) for v in videos)
    return out


def _random_videos(seed, n_videos=12, decimals=None):
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n_videos):
        n = int(rng.integers(5, 400))
        video_label = i % 2
        labels = np.zeros(n, dtype=np.int64)
        if video_label:
            start = int(rng.integers(0, n - 1))
            labels[start : start + int(rng.integers(1, n - start + 1))] = 1
        scores = np.clip(rng.random(n) * 0.8 + 0.2 * labels, 0, 1).astype(np.float32)
        if decimals is not None:
            scores = np.round(scores, decimals).astype(np.float32)
        videos.append((scores, labels, video_label))
    return videos


@pytest.mark.parametrize("seed", range(5))
def test_random_videos_match_sklearn(seed):
    _assert_matches(_random_videos(seed))


@pytest.mark.parametrize("seed", range(3))
def test_heavy_ties_match_sklearn(seed):
    videos = _random_videos(100 + seed, decimals=1)
    assert len(np.unique(np.concatenate([v[0] for v in videos]))) <= 11
    _assert_matches(videos)


def test_all_scores_equal():
    videos = [(np.full(10, 0.3, np.float32), np.zeros(10, np.int64), 0)]
    videos.append((np.full(7, 0.3, np.float32), np.array([0, 1, 1, 1, 0, 0, 0]), 1))
    out = _assert_matches(videos)
    assert out["frame_auc"] == pytest.approx(0.5) and out["far"] == 0.0


def test_perfectly_separated_and_inverted():
    labels = np.array([0, 0, 0, 1, 1, 0])
    good = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.4], np.float32)
    out = _assert_matches([(good, labels, 1), (np.array([0.05, 0.6], np.float32), np.zeros(2, np.int64), 0)])
    assert out["frame_auc"] == pytest.approx(1.0) and out["frame_ap_step"] == pytest.approx(1.0)
    out = _assert_matches([(1 - good, labels, 1)])
    assert out["frame_auc"] == pytest.approx(0.0) and out["frame_auc_abnormal"] == pytest.approx(0.0)


def test_tiny():
    _assert_matches([(np.array([0.3, 0.7], np.float32), np.array([0, 1]), 1)])
    _assert_matches(
        [(np.array([0.2], np.float32), np.array([0]), 0), (np.array([0.9], np.float32), np.array([1]), 1)]
    )


def test_only_normal_videos():
    out = _assert_matches([(np.array([0.1, 0.6, 0.5], np.float32), np.zeros(3, np.int64), 0)] * 2)
    for k in ("frame_auc", "frame_ap_step", "frame_ap_trapz", "frame_auc_abnormal"):
        assert math.isnan(out[k]), k
    assert out["far"] == pytest.approx(2 / 3)


def test_only_abnormal_videos():
    out = _assert_matches(_random_videos(7)[1::2])
    assert math.isnan(out["far"]) and out["n_abnormal_videos"] == out["n_videos"]
    assert out["frame_auc"] == pytest.approx(out["frame_auc_abnormal"], abs=TOL)


def test_far_exact_with_ties_at_threshold():
    normal = np.array([0.49, 0.5, 0.5, 0.51, 0.1, 0.0, 1.0, 0.3], np.float32)
    abnormal = (np.array([0.9, 0.95], np.float32), np.array([1, 1]), 1)  # never counted in FAR
    assert _run([(normal, np.zeros(8, np.int64), 0), abnormal])["far"] == 4 / 8  # 0.5, 0.5, 0.51, 1.0
    # float32 0.3 against threshold 0.3: compared in the scores dtype, so it is "at" the threshold and counts.
    assert _run([(normal, np.zeros(8, np.int64), 0)], threshold=0.3)["far"] == 6 / 8
    assert _run([(normal, np.zeros(8, np.int64), 0)], threshold=0.0)["far"] == 1.0


def test_frame_auc_abnormal_is_abnormal_concatenation():
    videos = _random_videos(11)
    abn = [v for v in videos if v[2] == 1]
    s, y = np.concatenate([v[0] for v in abn]), np.concatenate([v[1] for v in abn])
    assert _run(videos)["frame_auc_abnormal"] == pytest.approx(roc_auc_score(y, s), abs=TOL)


def test_float64_scores_and_synced_tensor_state():
    videos = [(v[0].astype(np.float64) + 1e-9 * (v[0] < 0.5), v[1], v[2]) for v in _random_videos(3)]
    m = FrameAnomalyMetrics()
    for s, y, vl in videos:
        m.update(torch.as_tensor(s), torch.as_tensor(y), vl)
    # After a DDP sync torchmetrics turns list states into single tensors: compute must accept both.
    for name in ("scores", "labels", "video_labels", "video_lengths"):
        setattr(m, name, torch.cat(getattr(m, name)))
    out, ref = m.compute(), _reference(videos)
    for k in KEYS:
        assert out[k] == pytest.approx(ref[k], abs=TOL), k


def test_video_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.round(np.clip(rng.random(50) * 0.7 + 0.3 * y, 0, 1), 2).astype(np.float32)
    m = VideoAUC()
    for i in range(0, 50, 16):
        m.update(torch.as_tensor(s[i : i + 16]), torch.as_tensor(y[i : i + 16]))
    out = m.compute()
    assert out.ndim == 0 and float(out) == pytest.approx(roc_auc_score(y, s), abs=TOL)
    one_class = VideoAUC()
    one_class.update(torch.tensor([0.2, 0.9]), torch.tensor([1, 1]))
    assert torch.isnan(one_class.compute())


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf")])
def test_guard_rejects_non_probabilities(bad):
    scores = torch.tensor([0.2, bad, 0.4])
    with pytest.raises(VadmilError, match="probabilities"):
        FrameAnomalyMetrics().update(scores, torch.tensor([0, 1, 0]), 1)
    with pytest.raises(VadmilError, match="probabilities"):
        VideoAUC().update(scores, torch.tensor([0, 1, 0]))


def test_guard_rejects_bad_shapes_and_labels():
    m = FrameAnomalyMetrics()
    with pytest.raises(VadmilError, match="equal length"):
        m.update(torch.rand(5), torch.zeros(4, dtype=torch.long), 0)
    with pytest.raises(VadmilError, match="equal length"):
        VideoAUC().update(torch.rand(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(VadmilError, match="0 .normal. or 1"):
        m.update(torch.rand(3), torch.tensor([0, 2, 0]), 1)
    with pytest.raises(VadmilError, match="video_label"):
        m.update(torch.rand(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(VadmilError, match="normal video"):
        m.update(torch.rand(3), torch.tensor([0, 1, 0]), 0)
    with pytest.raises(VadmilError, match="no frames"):
        m.update(torch.rand(0), torch.zeros(0, dtype=torch.long), 0)
    with pytest.raises(VadmilError, match="threshold"):
        FrameAnomalyMetrics(threshold=1.5)


def test_no_update_and_reset():
    with pytest.raises(VadmilError, match="no video"):
        FrameAnomalyMetrics().compute()
    with pytest.raises(VadmilError, match="no video"):
        VideoAUC().compute()
    videos = _random_videos(5)
    m = FrameAnomalyMetrics()
    for s, y, vl in videos:
        m.update(torch.as_tensor(s), torch.as_tensor(y), vl)
    first = m.compute()
    m.reset()
    with pytest.raises(VadmilError, match="no video"):
        m.compute()
    for s, y, vl in videos[:2]:
        m.update(torch.as_tensor(s), torch.as_tensor(y), vl)
    assert m.compute()["n_videos"] == 2 != first["n_videos"]
    v = VideoAUC()
    v.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    v.reset()
    with pytest.raises(VadmilError, match="no video"):
        v.compute()

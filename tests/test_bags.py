"""Bag pooling (docs/methods.md §1), feature normalisation and padding against straightforward references."""

import numpy as np
import pytest
import torch

from vadmil.data.bags import eval_features, pad_videos, pool_segments
from vadmil.errors import VadmilError


def _ref_pool(x: np.ndarray, n_segments: int) -> np.ndarray:
    """docs/methods.md §1, one segment at a time: boundaries linspace(0, T, S + 1) truncated to int; segment i is the
    mean of snippets [b_i, b_{i+1}), or the single snippet b_i when that range is empty."""
    t = x.shape[0]
    bounds = [int(b) for b in np.linspace(0, t, n_segments + 1)]
    segments = []
    for i in range(n_segments):
        lo, hi = bounds[i], bounds[i + 1]
        segments.append(x[lo:hi].astype(np.float64).mean(axis=0) if hi > lo else x[lo])
    return np.stack(segments)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _video(t: int, c: int, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # norms vary per snippet, so snippet- and segment-level normalisation give different results
    return (rng.normal(size=(t, c, d)) * rng.uniform(0.1, 5.0, size=(t, 1, 1))).astype(np.float32)


@pytest.mark.parametrize("t", [1, 5, 31, 32, 33, 100, 301])
@pytest.mark.parametrize("c", [1, 5, 10])
@pytest.mark.parametrize("n_segments", [32, 7])
def test_pool_segments_matches_reference(t, c, n_segments):
    x = _video(t, c, seed=t * 10 + c)
    out, mask = pool_segments(x, n_segments)
    assert out.shape == (n_segments, c, 6) and out.dtype == np.float32
    assert mask.shape == (n_segments,) and mask.dtype == bool and mask.all()
    np.testing.assert_allclose(out, _ref_pool(x, n_segments), rtol=1e-5, atol=1e-6)


def test_pool_segments_known_values():
    # T=3, S=4: bounds [0, 0, 1, 2, 3] -> segment 0 is empty and takes snippet 0
    x = np.arange(3, dtype=np.float32).reshape(3, 1, 1)
    out, _ = pool_segments(x, 4)
    assert out.ravel().tolist() == [0.0, 0.0, 1.0, 2.0]
    # T=6, S=2: means of [0, 3) and [3, 6)
    x = np.arange(6, dtype=np.float32).reshape(6, 1, 1)
    out, _ = pool_segments(x, 2)
    assert out.ravel().tolist() == [1.0, 4.0]


def test_pool_segments_exact_length_is_identity():
    x = _video(32, 2)
    out, mask = pool_segments(x, 32)
    np.testing.assert_array_equal(out, x)
    assert mask.all()


@pytest.mark.parametrize("t", [1, 5, 31])
def test_short_videos_mask_pads_and_masks(t):
    x = _video(t, 3)
    out, mask = pool_segments(x, 32, short_videos="mask")
    assert out.shape == (32, 3, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:t], x)  # each snippet exactly once, in order
    assert (out[t:] == 0).all()
    assert mask.tolist() == [True] * t + [False] * (32 - t)


@pytest.mark.parametrize("t", [32, 33, 100])
def test_short_videos_mask_long_videos_pool_as_usual(t):
    x = _video(t, 2)
    out, mask = pool_segments(x, 32, short_videos="mask")
    ref, _ = pool_segments(x, 32, short_videos="repeat")
    np.testing.assert_array_equal(out, ref)
    assert mask.all()


@pytest.mark.parametrize("t", [5, 100])
def test_segment_l2_gives_unit_norm_segments(t):
    x = _video(t, 2)
    out, mask = pool_segments(x, 32, normalise="segment_l2")
    assert mask.all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, _unit(_ref_pool(x, 32)), rtol=1e-5, atol=1e-6)


def test_segment_l2_with_mask_leaves_padding_zero():
    x = _video(5, 2)
    out, mask = pool_segments(x, 32, short_videos="mask", normalise="segment_l2")
    np.testing.assert_allclose(np.linalg.norm(out[:5], axis=-1), 1.0, rtol=1e-5)
    assert (out[5:] == 0).all() and mask.sum() == 5


def test_snippet_l2_normalises_before_pooling():
    x = _video(100, 2)
    snippet, _ = pool_segments(x, 32, normalise="snippet_l2")
    segment, _ = pool_segments(x, 32, normalise="segment_l2")
    np.testing.assert_allclose(snippet, _ref_pool(_unit(x), 32), rtol=1e-5, atol=1e-6)
    # a mean of unit vectors is shorter than 1 unless they agree, so this is not segment_l2
    assert (np.linalg.norm(snippet, axis=-1) < 1.0 - 1e-3).any()
    assert not np.allclose(snippet, segment, atol=1e-3)


def test_zero_snippets_stay_zero_under_l2():
    x = np.zeros((4, 1, 3), dtype=np.float32)
    for normalise in ("segment_l2", "snippet_l2"):
        out, _ = pool_segments(x, 2, normalise=normalise)
        assert np.isfinite(out).all() and (out == 0).all()
    assert (eval_features(x, "snippet_l2") == 0).all()


def test_eval_features():
    x = _video(7, 3)
    assert eval_features(x, "none") is x
    for normalise in ("segment_l2", "snippet_l2"):
        out = eval_features(x, normalise)
        assert out.shape == x.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, _unit(x), rtol=1e-5)
    with pytest.raises(
        VadmilError, match="unknown normalise 'l1'; choose one of none, segment_l2, snippet_l2"
    ):
        eval_features(x, "l1")


def test_pad_videos_shapes_values_and_mask():
    rng = np.random.default_rng(0)
    lengths = [3, 5, 1]
    videos = [torch.from_numpy(rng.normal(size=(2, t, 4)).astype(np.float32)) for t in lengths]
    x, mask = pad_videos(videos)
    assert x.shape == (3, 2, 5, 4) and x.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.shape == (3, 5)
    for i, (v, t) in enumerate(zip(videos, lengths, strict=True)):
        assert torch.equal(x[i, :, :t], v)
        assert (x[i, :, t:] == 0).all()
        assert mask[i].tolist() == [True] * t + [False] * (5 - t)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalise": "l2"}, "unknown normalise 'l2'; choose one of none, segment_l2, snippet_l2"),
        ({"short_videos": "drop"}, "unknown short_videos 'drop'; choose one of repeat, mask"),
    ],
)
def test_invalid_pool_options_raise(kwargs, match):
    with pytest.raises(VadmilError, match=match):
        pool_segments(_video(10, 1), 32, **kwargs)


def test_pool_empty_video_raises():
    with pytest.raises(VadmilError, match="no snippets"):
        pool_segments(np.zeros((0, 1, 4), dtype=np.float32), 32)

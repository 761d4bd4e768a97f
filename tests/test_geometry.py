"""SnippetGeometry: snippet counts per tail policy and snippet → frame expansion against plain loops."""

import itertools

import numpy as np
import pytest
import torch

from vadmil.data.geometry import TAIL_POLICIES, SnippetGeometry
from vadmil.errors import VadmilError


def _ref_n_snippets(length: int, stride: int, policy: str, n_frames: int) -> int:
    """Walk the video: full snippets while they fit, then (unless drop) one partial snippet starting inside the
    video when frames are left after the last full one."""
    starts, start = [], 0
    while start + length <= n_frames:
        starts.append(start)
        start += stride
    covered_to = starts[-1] + length if starts else 0
    if policy != "drop" and covered_to < n_frames and start < n_frames:
        starts.append(start)
    return len(starts)


def _ref_expand(scores: list[float], n_frames: int, length: int, stride: int) -> list[float]:
    """Per frame: the mean of the snippets covering it; an uncovered frame (a gap or a dropped tail) takes the
    snippet starting at or before it, clipped to the last snippet."""
    out = []
    for f in range(n_frames):
        covering = [scores[i] for i in range(len(scores)) if i * stride <= f < i * stride + length]
        if covering:
            out.append(sum(covering) / len(covering))
        else:
            out.append(scores[min(f // stride, len(scores) - 1)])
    return out


@pytest.mark.parametrize(
    "length, stride, n_frames, expected",
    [
        # (drop, pad_last, loop)
        (16, 16, 795, (49, 50, 50)),
        (16, 16, 784, (49, 49, 49)),  # exactly 49 snippets: no partial one
        (16, 16, 16, (1, 1, 1)),  # exactly one snippet
        (16, 16, 17, (1, 2, 2)),
        (16, 16, 10, (0, 1, 1)),  # fewer frames than one snippet
        (16, 16, 1, (0, 1, 1)),
        (16, 16, 0, (0, 0, 0)),
        (16, 8, 795, (98, 99, 99)),  # overlapping: last full snippet covers 776..791
        (16, 8, 24, (2, 2, 2)),  # second snippet 8..23 ends exactly at the end
        (16, 8, 25, (2, 3, 3)),
        (4, 10, 5, (1, 1, 1)),  # gap: the next start (10) lies past the end, nothing to pad
        (4, 10, 11, (1, 2, 2)),
    ],
)
def test_n_snippets_table(length, stride, n_frames, expected):
    got = tuple(SnippetGeometry(length, stride, p).n_snippets(n_frames) for p in TAIL_POLICIES)
    assert got == expected


@pytest.mark.parametrize("length, stride", [(1, 1), (4, 3), (16, 16), (16, 8), (4, 10), (5, 7)])
def test_n_snippets_matches_walk_and_starts_lie_inside_video(length, stride):
    for policy in TAIL_POLICIES:
        g = SnippetGeometry(length, stride, policy)
        for n in range(0, 60):
            t = g.n_snippets(n)
            assert t == _ref_n_snippets(length, stride, policy, n), (policy, n)
            starts = g.snippet_starts(n)
            assert starts.tolist() == [i * stride for i in range(t)]
            assert (starts < n).all(), f"a snippet starts past the end ({policy}, n={n})"


GRID = list(
    itertools.product(
        [1, 4, 16],  # length
        [1, 3, 8, 16, 20],  # stride
        TAIL_POLICIES,
        [1, 5, 16, 17, 47, 100],  # n_frames
    )
)


@pytest.mark.parametrize("length, stride, policy, n_frames", GRID)
def test_expand_matches_per_frame_reference(length, stride, policy, n_frames):
    g = SnippetGeometry(length, stride, policy)
    t = g.n_snippets(n_frames)
    rng = np.random.default_rng(length * 1000 + stride * 100 + n_frames)
    if t == 0:
        with pytest.raises(VadmilError, match="no snippets"):
            g.expand(rng.random(0), n_frames)
        return
    scores = rng.random(t)
    got = g.expand(scores, n_frames)
    assert got.dtype == torch.float32 and got.shape == (n_frames,)
    ref = _ref_expand(scores.tolist(), n_frames, length, stride)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("policy, n_frames", [("drop", 795), ("pad_last", 795), ("drop", 784)])
def test_expand_16_16_repeats_each_score_and_tail_takes_last(policy, n_frames):
    g = SnippetGeometry(16, 16, policy)
    t = g.n_snippets(n_frames)
    scores = torch.arange(t, dtype=torch.float32)
    frames = g.expand(scores, n_frames)
    assert frames.shape == (n_frames,)
    full = torch.repeat_interleave(scores, 16)[:n_frames]
    assert torch.equal(frames[: len(full)], full)
    # 795 frames with drop: frames 784..794 are past the last snippet (48) and take its score
    assert (frames[len(full) :] == scores[-1]).all()
    assert frames[-1] == t - 1


def test_expand_overlapping_snippets_average():
    g = SnippetGeometry(16, 8, "drop")
    frames = g.expand(torch.tensor([0.0, 1.0, 2.0]), 32)
    assert frames[:8].tolist() == [0.0] * 8  # only snippet 0
    assert frames[8:16].tolist() == [0.5] * 8  # snippets 0 and 1
    assert frames[16:24].tolist() == [1.5] * 8  # snippets 1 and 2
    assert frames[24:].tolist() == [2.0] * 8  # only snippet 2


def test_expand_gap_takes_snippet_before():
    g = SnippetGeometry(4, 10, "drop")
    frames = g.expand(np.array([1.0, 2.0]), 16)
    assert frames.tolist() == [1.0] * 10 + [2.0] * 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"length": 0}, "length and stride must be positive.*length=0"),
        ({"stride": 0}, "length and stride must be positive.*stride=0"),
        ({"length": -16}, "length=-16"),
        ({"tail_policy": "ceil"}, "unknown tail_policy 'ceil'; choose one of drop, pad_last, loop"),
    ],
)
def test_invalid_geometry_raises(kwargs, match):
    with pytest.raises(VadmilError, match=match):
        SnippetGeometry(**kwargs)


def test_attrs_round_trip():
    g = SnippetGeometry(32, 8, "loop")
    attrs = g.to_attrs()
    assert attrs == {"snippet_len": 32, "snippet_stride": 8, "tail_policy": "loop"}
    # h5py hands back numpy scalars: from_attrs must accept them
    assert SnippetGeometry.from_attrs({k: np.array(v) for k, v in attrs.items()}) == g

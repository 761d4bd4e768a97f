"""Bags: pooling a video's snippets to a fixed number of segments, feature normalisation, padding.

Training bags follow the convention shared by the MIL methods (README, Training data and protocol): segment boundaries are
``linspace(0, T, S + 1)`` truncated to int; segment i is the mean of snippets [b_i, b_{i+1}), or the single snippet
b_i when that range is empty (short videos repeat snippets). ``short_videos="mask"`` instead keeps a short video's
T snippets as they are and pads to S with a mask, so no snippet is counted twice.
"""

from __future__ import annotations

import numpy as np
import torch

from vadmil.errors import VadmilError, check_choice

NORMALISATIONS = ("none", "segment_l2", "snippet_l2")
SHORT_VIDEO_POLICIES = ("repeat", "mask")


def segment_bounds(n_snippets: int, n_segments: int) -> np.ndarray:
    """Boundaries b_0..b_S of the S segments, shape [S + 1]."""
    return np.linspace(0, n_snippets, n_segments + 1).astype(np.int64)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Unit L2 norm along the last axis (zero vectors stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def pool_segments(
    x: np.ndarray, n_segments: int = 32, short_videos: str = "repeat", normalise: str = "none"
) -> tuple[np.ndarray, np.ndarray]:
    """Pool snippets [T, C, D] to segments [S, C, D]; returns (segments, mask [S] bool).

    ``normalise``: ``segment_l2`` normalises each pooled segment (Sultani's code), ``snippet_l2`` each snippet
    before pooling (Sultani's paper), ``none`` leaves features as stored.
    """
    check_choice("normalise", normalise, NORMALISATIONS)
    check_choice("short_videos", short_videos, SHORT_VIDEO_POLICIES)
    n = x.shape[0]
    if n < 1:
        raise VadmilError("cannot pool a video with no snippets")
    if normalise == "snippet_l2":
        x = l2_normalise(x)
    mask = np.ones(n_segments, dtype=bool)
    if n < n_segments and short_videos == "mask":
        out = np.zeros((n_segments, *x.shape[1:]), dtype=np.float32)
        out[:n] = x
        mask[n:] = False
    else:
        b = segment_bounds(n, n_segments)
        # reduceat sums x[b_i:b_{i+1}] and yields x[b_i] itself where the range is empty: exactly the rule.
        width = np.maximum(b[1:] - b[:-1], 1).reshape((-1,) + (1,) * (x.ndim - 1))
        out = (np.add.reduceat(x, b[:-1], axis=0) / width).astype(np.float32)
    if normalise == "segment_l2":
        out = np.where(mask.reshape(-1, *(1,) * (x.ndim - 1)), l2_normalise(out), 0.0).astype(np.float32)
    return out, mask


def eval_features(x: np.ndarray, normalise: str = "none") -> np.ndarray:
    """Full-length evaluation features [T, C, D]; both L2 variants normalise each snippet (its own segment)."""
    check_choice("normalise", normalise, NORMALISATIONS)
    return x if normalise == "none" else l2_normalise(x).astype(np.float32)


def pad_videos(videos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length videos [C, T_i, D] into [B, C, T_max, D] with a mask [B, T_max]."""
    t_max = max(v.shape[1] for v in videos)
    c, d = videos[0].shape[0], videos[0].shape[2]
    x = videos[0].new_zeros((len(videos), c, t_max, d))
    mask = torch.zeros(len(videos), t_max, dtype=torch.bool)
    for i, v in enumerate(videos):
        x[i, :, : v.shape[1]] = v
        mask[i, : v.shape[1]] = True
    return x, mask

"""Snippet geometry: how many snippets a video has and which frames each snippet covers.

Every store records ``snippet_len``, ``snippet_stride`` and ``tail_policy``; scores are expanded to frames from
these values and each video's true ``n_frames``, never from a hard-coded 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vadmil.errors import VadmilError, check_choice

TAIL_POLICIES = ("drop", "pad_last", "loop")


@dataclass(frozen=True)
class SnippetGeometry:
    """Snippet ``i`` covers frames ``[i * stride, i * stride + length)``.

    ``tail_policy``: ``drop`` discards the frames after the last full snippet; ``pad_last`` and ``loop`` keep a
    final partial snippet (padded by repeating the last frame, or by looping the video from its start).
    """

    length: int = 16
    stride: int = 16
    tail_policy: str = "drop"

    def __post_init__(self):
        if self.length < 1 or self.stride < 1:
            raise VadmilError(
                f"snippet length and stride must be positive, got length={self.length} stride={self.stride}"
            )
        check_choice("tail_policy", self.tail_policy, TAIL_POLICIES)

    def n_snippets(self, n_frames: int) -> int:
        """Number of snippets cut from a video of ``n_frames`` frames (e.g. 795 frames: 49 drop, 50 pad_last)."""
        if n_frames < self.length:
            return 0 if self.tail_policy == "drop" or n_frames <= 0 else 1
        rest = n_frames - self.length
        full = rest // self.stride + 1
        if self.tail_policy == "drop":
            return full
        # One final partial snippet when frames remain after the last full one and it starts inside the video
        # (with stride > length the next start can lie past the end: then there is no partial snippet).
        return full + int(rest % self.stride != 0 and full * self.stride < n_frames)

    def snippet_starts(self, n_frames: int) -> np.ndarray:
        """First frame index of each snippet, shape [T]."""
        return np.arange(self.n_snippets(n_frames), dtype=np.int64) * self.stride

    def frame_to_snippets(self, n_frames: int, n_snippets: int) -> tuple[np.ndarray, np.ndarray]:
        """For each frame, the first and last snippet index (inclusive) whose score it takes, each shape [F].

        A frame covered by several overlapping snippets takes their mean; a frame no snippet covers (a dropped
        tail, or a gap when stride > length) takes the snippet that starts at or before it, clipped to the last one.
        """
        if n_snippets < 1:
            raise VadmilError("cannot expand scores to frames: the video has no snippets")
        f = np.arange(n_frames, dtype=np.int64)
        last = np.clip(f // self.stride, 0, n_snippets - 1)
        first = np.clip(-(-(f - self.length + 1) // self.stride), 0, n_snippets - 1)
        return np.minimum(first, last), last

    def expand(self, snippet_scores: torch.Tensor | np.ndarray, n_frames: int) -> torch.Tensor:
        """Per-snippet scores [T] to per-frame scores [n_frames] (float32 tensor)."""
        scores = torch.as_tensor(snippet_scores, dtype=torch.float32).reshape(-1)
        first, last = self.frame_to_snippets(n_frames, scores.numel())
        csum = torch.cat([scores.new_zeros(1), torch.cumsum(scores.double(), 0)])
        lo, hi = torch.from_numpy(first), torch.from_numpy(last)
        return ((csum[hi + 1] - csum[lo]) / (hi - lo + 1).double()).float()

    def to_attrs(self) -> dict:
        return {"snippet_len": self.length, "snippet_stride": self.stride, "tail_policy": self.tail_policy}

    @classmethod
    def from_attrs(cls, attrs) -> SnippetGeometry:
        return cls(int(attrs["snippet_len"]), int(attrs["snippet_stride"]), str(attrs["tail_policy"]))

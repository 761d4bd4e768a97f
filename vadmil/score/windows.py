"""Scoring with a bounded temporal window, offline or as snippets arrive.

Heads that look at the whole sequence (GCN graphs, RTFM's non-local block, DTED's encoder–decoder) cannot score
snippet ``i`` before the video ends — unless each score comes from a window of recent snippets. Snippet ``i`` of a
``T``-snippet video is scored from snippets ``lo .. hi`` with ``hi = min(i + lookahead, T - 1)`` and
``lo = max(0, hi - window + 1)``: with ``lookahead = 0`` the window is causal and a score is ready as soon as its
snippet is; with ``lookahead = L`` it waits for L more snippets (latency L snippets) and sees that much future.
``window = None`` uses every snippet so far (exact for causal heads, cost growing with the video). A per-snippet
head (FCN) gives the same scores for any window.

:func:`windowed_scores` computes all scores from the finished feature sequence; :class:`StreamingScorer`
produces the same numbers incrementally, holding only the last ``window + lookahead`` snippets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from vadmil.errors import VadmilError

ScoreFn = Callable[[np.ndarray], np.ndarray]  # features [t, C, D] -> scores [t]


def _check(window: int | None, lookahead: int) -> None:
    if window is not None and window < 1:
        raise VadmilError(f"window must be a positive number of snippets (or null: all so far), got {window}")
    if lookahead < 0 or (window is not None and lookahead >= window):
        raise VadmilError(f"lookahead must be in [0, window), got lookahead={lookahead} with window={window}")


def window_bounds(i: int, n: int, window: int | None, lookahead: int) -> tuple[int, int]:
    """[lo, hi] (inclusive) of the snippets that score snippet ``i`` when ``n`` snippets are known."""
    hi = min(i + lookahead, n - 1)
    return (0 if window is None else max(0, hi - window + 1)), hi


def windowed_scores(
    score: ScoreFn, features: np.ndarray, window: int | None, lookahead: int = 0
) -> np.ndarray:
    """Scores [T] of ``features`` [T, C, D], each from its window (see the module docstring)."""
    _check(window, lookahead)
    n = len(features)
    out = np.empty(n, np.float32)
    for i in range(n):
        lo, hi = window_bounds(i, n, window, lookahead)
        out[i] = score(features[lo : hi + 1])[i - lo]
    return out


class StreamingScorer:
    """Feed snippet features one at a time; get back each score as soon as its window is complete.

    ``push(features [C, D])`` returns the (index, score) pairs that became ready (at most one); ``finish()``
    returns the rest (the last ``lookahead`` snippets, scored with truncated look-ahead)."""

    def __init__(self, score: ScoreFn, window: int | None, lookahead: int = 0):
        _check(window, lookahead)
        self.score, self.window, self.lookahead = score, window, lookahead
        self.buffer: deque[np.ndarray] = deque(maxlen=None if window is None else window + lookahead)
        self.received = 0  # snippets pushed so far
        self.emitted = 0  # snippets scored so far

    @property
    def latency(self) -> int:
        """Snippets between a snippet's arrival and its score."""
        return self.lookahead

    def _emit(self, i: int, n: int) -> tuple[int, float]:
        lo, hi = window_bounds(i, n, self.window, self.lookahead)
        first = self.received - len(self.buffer)  # index of buffer[0]
        window = np.stack([self.buffer[j - first] for j in range(lo, hi + 1)])
        self.emitted += 1
        return i, float(self.score(window)[i - lo])

    def push(self, features: np.ndarray) -> list[tuple[int, float]]:
        self.buffer.append(np.asarray(features))
        self.received += 1
        i = self.received - 1 - self.lookahead
        # n = infinity while streaming: the window of i ends at i + lookahead, which has just arrived
        return [self._emit(i, self.received)] if i >= 0 else []

    def finish(self) -> list[tuple[int, float]]:
        return [self._emit(i, self.received) for i in range(self.emitted, self.received)]

"""What `vadmil score` writes per video: ``<id>.csv`` and ``<id>.json`` (frame, timestamp, score) and ``<id>.png``.

Alerts are the maximal runs of frames whose score reaches the threshold, with their times and peak score. Every
time is a frame's presentation time from the stream's timestamps (``times``, seconds from the first frame), so a
variable-rate file or one that states a wrong frame rate gets the times a player shows, not ``frame / fps``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

_PNG_METADATA = {"Software": None}  # no library version in the file: re-runs are byte-identical


def alerts(scores: np.ndarray, threshold: float, times: np.ndarray) -> list[dict]:
    """Maximal runs of frames with score >= threshold: start/end frame (inclusive), their times, peak score."""
    above = np.concatenate([[False], scores >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    out = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        out.append({
            "start_frame": int(start), "end_frame": int(stop - 1),
            "start_s": round(float(times[start]), 3), "end_s": round(float(times[stop - 1]), 3),
            "peak": round(float(scores[start:stop].max()), 6),
        })  # fmt: skip
    return out


def frame_start(times: np.ndarray, i: int, duration_s: float) -> float:
    """When frame ``i`` starts; frame ``n`` (one past the last) starts when the video ends."""
    return float(times[i]) if i < len(times) else float(duration_s)


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)  # never a half-written file under the final name


def write_csv(path: Path, frames: np.ndarray, times: np.ndarray, labels: np.ndarray | None = None) -> None:
    """``frame,time_s,score`` (+ ``label`` with ground truth), one row per decoded frame."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["frame", "time_s", "score"] + (["label"] if labels is not None else []))
            for i, s in enumerate(frames):
                w.writerow(
                    [i, f"{times[i]:.4f}", f"{s:.6f}"] + ([int(labels[i])] if labels is not None else [])
                )

    _replace(path, write)


def write_json(
    path: Path, summary: dict, snippet_scores: np.ndarray, frames: np.ndarray, times: np.ndarray
) -> None:
    """``summary`` plus the snippet scores and the per-frame columns (frame, time_s, score)."""
    data = {
        **summary,
        "snippet_scores": [round(float(s), 6) for s in snippet_scores],
        "frames": {
            "frame": list(range(len(frames))),
            "time_s": [round(float(t), 4) for t in times],
            "score": [round(float(s), 6) for s in frames],
        },
    }
    _replace(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def write_plot(path: Path, frames: np.ndarray, times: np.ndarray, duration_s: float, threshold: float, title: str,
               truth: list[tuple[int, int]] | None = None) -> None:  # fmt: skip
    """Score over time, the threshold as a dashed line, ground-truth intervals shaded when known."""
    t = np.asarray(times, np.float64)
    with matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3}):
        fig = Figure(figsize=(10, 3), dpi=100)
        ax = fig.add_subplot()
        for k, (start, end) in enumerate(truth or []):
            ax.axvspan(frame_start(t, start, duration_s), frame_start(t, end + 1, duration_s), color="#d62728", alpha=0.15, lw=0,
                       label="ground truth" if k == 0 else None)  # fmt: skip
        ax.plot(t, frames, color="#1f77b4", lw=1.2, label="anomaly score")
        ax.axhline(threshold, color="#555555", ls="--", lw=0.9, label=f"threshold {threshold:g}")
        ax.set(
            xlabel="time (s)",
            ylabel="score",
            xlim=(0, max(t[-1], duration_s)),
            ylim=(-0.02, 1.02),
            title=title,
        )
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        _replace(path, lambda tmp: fig.savefig(tmp, format="png", metadata=_PNG_METADATA))

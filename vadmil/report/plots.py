"""Figures for the HTML page as inline SVG strings (matplotlib, no pyplot state, byte-identical re-runs).

Determinism: a fixed ``svg.hashsalt`` (element ids), no date or creator metadata, text kept as text. Each SVG is
made safe to inline several times in one page: the XML prolog, DOCTYPE and namespace URLs are removed
(HTML5 knows SVG), ``xlink:href`` becomes ``href``, and element ids get a per-figure prefix.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from vadmil.report.curves import intervals

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_RC = {"svg.hashsalt": "vadmil", "svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
MAX_VIDEO_POINTS = 1500


@dataclass
class Series:
    """One head in a figure: its label, colour and data (curves: a list of (x, y) per seed; video: a frame
    score array)."""

    label: str
    color: str
    data: object


def to_svg(fig: Figure, prefix: str) -> str:
    """The figure as an SVG element ready to inline into HTML (see the module docstring)."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata=_METADATA, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg).replace("xlink:href=", "href=")
    for name in sorted(set(re.findall(r'\sid="([^"]+)"', svg)), key=len, reverse=True):
        svg = re.sub(rf'(id="|url\(#|href="#){re.escape(name)}(?=["\)])', rf"\g<1>{prefix}-{name}", svg)
    return svg


def _figure(width: float, height: float) -> tuple[Figure, object]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height))
        ax = fig.add_subplot()
    return fig, ax


def curve_figure(series: list[Series], kind: str, prefix: str, metric: str = "") -> str:
    """ROC (``kind="roc"``) or precision-recall (``"pr"``) curves: one colour per head, one line per seed;
    ``metric`` names the mean in the legend labels."""
    title = f"\n(legend: mean test {metric})" if metric else ""
    fig, ax = _figure(4.6, 3.8)
    with matplotlib.rc_context(_RC):
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#999999")
            ax.set(
                xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC, test frames{title}"
            )
        else:
            ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall, test frames{title}")
        for s in series:
            for i, (x, y) in enumerate(s.data):
                ax.plot(x, y, color=s.color, lw=1.2, alpha=0.8, label=s.label if i == 0 else None)
        ax.set(xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    return to_svg(fig, prefix)


def spread_figure(rows: list[Series], metric: str, prefix: str) -> str:
    """Per-seed values of ``metric``: each row's ``data`` is (validation-selected values, oracle values)."""
    fig, ax = _figure(4.6, 0.9 + 0.45 * len(rows))
    with matplotlib.rc_context(_RC):
        for i, s in enumerate(rows):
            selected, oracle = s.data
            y = len(rows) - 1 - i
            if oracle:
                ax.scatter(oracle, [y - 0.12] * len(oracle), s=26, facecolors="none", edgecolors=s.color)
            if selected:
                ax.scatter(selected, [y + 0.12] * len(selected), s=26, color=s.color)
                mean = float(np.mean(selected))
                ax.plot([mean, mean], [y - 0.3, y + 0.3], color=s.color, lw=1.5)
        ax.set_yticks(range(len(rows)), [s.label for s in reversed(rows)])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set(xlabel=f"test {metric}: ● validation-selected (| mean), ○ oracle best-on-test")
        ax.set_title("per-seed spread")
    return to_svg(fig, prefix)


def video_figure(video_id: str, series: list[Series], labels: np.ndarray, prefix: str) -> str:
    """Frame anomaly scores of one test video per head, the annotated anomalous frames shaded."""
    fig, ax = _figure(6.4, 2.3)
    step = max(1, -(-len(labels) // MAX_VIDEO_POINTS))
    with matplotlib.rc_context(_RC):
        for k, (start, stop) in enumerate(intervals(labels)):
            ax.axvspan(
                start, stop, color="#f2b8b5", alpha=0.6, lw=0, label="ground truth" if k == 0 else None
            )
        for s in series:
            frames = np.asarray(s.data)
            x = np.arange(0, len(frames), step)
            ax.plot(x, frames[::step], color=s.color, lw=1.1, label=s.label)
        ax.set(
            xlim=(0, len(labels)), ylim=(-0.02, 1.02), xlabel="frame", ylabel="anomaly score", title=video_id
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return to_svg(fig, prefix)

"""The figures of one leaderboard section: curves per head, per-seed spread, anomaly scores of a few videos."""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from vadmil.report.aggregate import METRIC_TITLES, Column, Section, metric_value
from vadmil.report.curves import load_predictions, pick_videos, pr_curve, roc_curve, thin
from vadmil.report.plots import PALETTE, Series, curve_figure, spread_figure, video_figure


@dataclass
class FigureOptions:
    """``curves``: roc | pr | auto (PR when the primary metric is an AP); ``videos``: how many test videos to
    draw; ``video_ids``: which ones (overrides ``videos``); ``max_groups``: rows of the ranking drawn (best
    first); ``max_points``: points per curve."""

    curves: str = "auto"
    videos: int = 4
    video_ids: list[str] = field(default_factory=list)
    max_groups: int = 8
    max_points: int = 400


@dataclass
class SectionFigures:
    curves: str | None = None  # SVG
    spread: str | None = None
    videos: list[str] = field(default_factory=list)
    representatives: list[tuple[str, str]] = field(
        default_factory=list
    )  # (label, run name) whose scores are drawn
    notes: list[str] = field(default_factory=list)


def colours(sections: list[Section]) -> dict[str, str]:
    """One colour per group label across the whole report (sorted labels → palette)."""
    labels = sorted({s.label(g) for s in sections for g in s.groups})
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def section_figures(
    section: Section, index: int, colour: dict[str, str], opt: FigureOptions
) -> SectionFigures:
    out = SectionFigures()
    groups = [g for g in section.groups if g.runs][: opt.max_groups]
    if not groups:
        return out
    kind = (
        opt.curves
        if opt.curves in ("roc", "pr")
        else ("pr" if section.primary.startswith("frame_ap") else "roc")
    )
    series, missing, reps = [], [], {}
    runs = [(g, r) for g in groups for r in g.runs]
    for group, run in tqdm(runs, desc=f"curves {section.dataset}", unit="run", leave=False, disable=None):
        predictions = load_predictions(run.path)
        if predictions is None:
            missing.append(run.name)
            continue
        if run is group.representative(section.primary):
            reps[id(group)] = (run, predictions)
        x, y = (roc_curve if kind == "roc" else pr_curve)(*predictions.concatenated())
        if len(x):
            label = section.label(group)
            mean = group.stat(Column("p", f"test.{section.primary}", "", 4), section.primary).mean
            legend = f"{label} ({mean:.3f})" if mean is not None else label
            if not series or series[-1].label != legend:
                series.append(Series(legend, colour[label], []))
            series[-1].data.append(thin(x, y, opt.max_points))
    prefix = f"s{index}"
    if series:
        out.curves = curve_figure(
            series, kind, f"{prefix}-curves", METRIC_TITLES.get(section.primary, section.primary)
        )
    out.spread = spread_figure(
        [
            Series(
                section.label(g),
                colour[section.label(g)],
                (
                    [v for r in g.runs if (v := metric_value(r.metrics, f"test.{section.primary}", "")) is not None],
                    [v for r in g.runs if (v := metric_value(r.metrics, f"oracle_test.{section.primary}", "")) is not None],
                ),
            )
            for g in groups
        ],
        METRIC_TITLES.get(section.primary, section.primary),
        f"{prefix}-spread",
    )  # fmt: skip
    if missing:
        out.notes.append(f"{len(missing)} run(s) have no frame predictions (written before vadmil 0.1 kept them): "
                         + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""))  # fmt: skip
    if reps and opt.videos + len(opt.video_ids) > 0:
        ordered = [reps[id(g)] for g in groups if id(g) in reps]
        first = ordered[0][1]
        out.representatives = [(section.label(g), reps[id(g)][0].name) for g in groups if id(g) in reps]
        for k, video in enumerate(pick_videos(first, opt.videos, opt.video_ids)):
            lines = [
                Series(section.label(g), colour[section.label(g)], reps[id(g)][1].scores[video])
                for g in groups
                if id(g) in reps and video in reps[id(g)][1].scores
            ]
            out.videos.append(video_figure(video, lines, first.labels[video], f"{prefix}-v{k}"))
    return out

"""Collect run dirs, rank them, write the leaderboard files (the library side of `vadmil report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vadmil.errors import VadmilError
from vadmil.report.aggregate import METRIC_TITLES, Column, build_sections
from vadmil.report.figures import FigureOptions, colours, section_figures
from vadmil.report.html import page
from vadmil.report.runs import collect_runs
from vadmil.report.tables import fmt, leaderboard_csv, markdown, runs_csv

FILES = ("leaderboard.csv", "runs.csv", "leaderboard.md", "leaderboard.html")


@dataclass
class ReportOptions:
    figures: FigureOptions = field(default_factory=FigureOptions)


def write_report(roots: list[str | Path], output: str | Path, options: ReportOptions | None = None) -> dict:
    """Write ``leaderboard.csv`` (one row per head × objective × settings on one dataset and feature set),
    ``runs.csv`` (one row per run, failed and unfinished ones included), ``leaderboard.md`` and
    ``leaderboard.html`` into ``output``. The same run dirs give byte-identical files.

    Returns ``{"files": [paths], "sections": [Section], "incomplete": [Run], "n_runs": int}``.
    """
    options = options or ReportOptions()
    runs = collect_runs(list(roots))
    sections, unmatched = build_sections(runs)
    incomplete = sorted((r for r in runs if r.status != "complete"), key=lambda r: r.name)
    placement = {r.path: (s, g) for s in sections for g in s.groups for r in g.runs + g.incomplete}
    colour = colours(sections)
    figures = [section_figures(s, i, colour, options.figures) for i, s in enumerate(sections)]
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise VadmilError(f"report: output={output} is a file; give a directory for the leaderboard files")
    output.mkdir(parents=True, exist_ok=True)
    texts = {
        "leaderboard.csv": leaderboard_csv(sections),
        "runs.csv": runs_csv(runs, placement),
        "leaderboard.md": markdown(sections, incomplete),
        "leaderboard.html": page(sections, figures, incomplete, len(runs)),
    }
    for name, text in texts.items():
        (output / name).write_text(text, encoding="utf-8")
    return {
        "files": [output / name for name in FILES],
        "sections": sections,
        "incomplete": incomplete,
        "unmatched": unmatched,
        "n_runs": len(runs),
    }


def summary(result: dict) -> str:
    lines = []
    for section in result["sections"]:
        lines.append(f"{section.title}, by test {METRIC_TITLES.get(section.primary, section.primary)}:")
        primary = Column("p", f"test.{section.primary}", "", 4)
        for g in section.groups:
            runs = f"{len(g.runs)} run(s)" + (f", {len(g.incomplete)} failed" if g.incomplete else "")
            lines.append(
                f"  {g.rank or '–':>3}  {section.label(g):<24} {fmt(g.stat(primary, section.primary), 4):<18} {runs}"
            )
    if result["incomplete"]:
        lines.append(f"{len(result['incomplete'])} run(s) did not finish (listed in the report)")
    return "\n".join(lines)

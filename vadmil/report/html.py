"""``leaderboard.html``: one self-contained page — inline CSS and SVG, no script, no external file, font or link."""

from __future__ import annotations

import re
from html import escape

from vadmil import __version__
from vadmil.report.aggregate import METRIC_TITLES, Section
from vadmil.report.categories import NOTE as CATEGORY_NOTE
from vadmil.report.categories import category_table
from vadmil.report.figures import SectionFigures
from vadmil.report.runs import Run
from vadmil.report.tables import NOTE, TEXT_COLUMNS, fmt, section_note, section_table

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; font-size: 13px; margin: 0.8em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; vertical-align: bottom; white-space: normal; max-width: 9em; }
td.text, th.text { text-align: left; }
th.primary { background: #e3ecf7; }
th.oracle, td.oracle { color: #8a4b00; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figs svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 13px; max-width: 80em; }
section { margin-bottom: 3em; }
"""


def _table(headers: list[str], rows: list[list[str]], primary: str | None = None) -> str:
    def cls(h: str) -> str:
        names = ["text"] if h in TEXT_COLUMNS or h in ("run", "status", "dataset", "reason") else []
        if "oracle" in h:
            names.append("oracle")
        if primary and h.startswith(primary) and "oracle" not in h:
            names.append("primary")
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(h)}>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{cls(h)}>{escape(c)}</td>" for h, c in zip(headers, row, strict=True)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(index: int, section: Section, figures: SectionFigures) -> str:
    headers, rows = section_table(section)
    primary = METRIC_TITLES.get(section.primary, section.primary)
    parts = [
        f'<section id="s{index}"><h2>{escape(section.title)}</h2>',
        f'<p class="note">{escape(section_note(section))}</p>',
        _table(headers, rows, primary),
    ]
    by_category = category_table(section, fmt)
    if by_category:
        parts += ["<h3>Frame AUC by anomaly category</h3>", f'<p class="note">{escape(CATEGORY_NOTE)}</p>',
                  _table(*by_category)]  # fmt: skip
    figs = [svg for svg in (figures.curves, figures.spread) if svg]
    if figs:
        if section.show_variant:
            parts.append('<p class="note">In the figures, "head #n" is the row ranked n in the table.</p>')
        parts.append('<div class="figs">' + "".join(figs) + "</div>")
    if figures.videos:
        reps = ", ".join(f"{escape(label)}: {escape(name)}" for label, name in figures.representatives)
        parts.append(
            "<h3>Anomaly scores of test videos</h3>"
            f'<p class="note">Ground-truth anomalous frames shaded. Per head, the run with the median test '
            f"{escape(primary)} over seeds: {reps}.</p>"
        )
        parts.append('<div class="figs">' + "".join(figures.videos) + "</div>")
    parts += [f'<p class="note">{escape(n)}</p>' for n in figures.notes]
    return "".join(parts) + "</section>"


def page(sections: list[Section], figures: list[SectionFigures], incomplete: list[Run], n_runs: int) -> str:
    toc = "".join(f'<li><a href="#s{i}">{escape(s.title)}</a></li>' for i, s in enumerate(sections))
    body = [
        "<h1>vadmil leaderboard</h1>",
        '<p class="note">' + re.sub(r"[*](.+?)[*]", r"<em>\1</em>", escape(NOTE)) + "</p>",
        f"<ul>{toc}</ul>" if len(sections) > 1 else "",
    ]
    body += [_section(i, s, f) for i, (s, f) in enumerate(zip(sections, figures, strict=True))]
    if incomplete:
        rows = [
            [r.name, r.status, r.dataset, r.head, "–" if r.seed is None else str(r.seed),
             r.error or "no metrics.json and no error.txt (killed or still running)"]
            for r in incomplete
        ]  # fmt: skip
        body.append(
            '<section id="incomplete"><h2>Runs that did not finish</h2>'
            + _table(["run", "status", "dataset", "head", "seed", "reason"], rows)
            + "</section>"
        )
    body.append(f'<p class="note">vadmil {escape(__version__)} report of {n_runs} run dir(s).</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>vadmil leaderboard</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )

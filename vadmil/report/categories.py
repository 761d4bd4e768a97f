"""Frame AUC by anomaly category in the leaderboard (``test.frame_auc_by_category`` of each run's metrics.json;
:mod:`vadmil.evaluation.categories`).

Each section whose runs report categories gets a second table: one row per leaderboard row, one column per
category, mean ± std over seeds. ``leaderboard.csv`` and ``runs.csv`` get ``frame_auc_category_<category>``
columns appended after their existing ones (``_mean`` / ``_std`` / ``_n`` per group), one per category any
section reports; a category a run lacks is empty.
"""

from __future__ import annotations

import math

from vadmil.evaluation.categories import KEY
from vadmil.report.aggregate import Group, Section, Stat, summarise
from vadmil.report.runs import Run

PREFIX = "frame_auc_category_"


def run_value(run: Run, category: str) -> float | None:
    """The run's finite frame AUC for ``category``, else None."""
    value = ((run.metrics or {}).get("test") or {}).get(KEY, {})
    value = value.get(category) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def run_categories(run: Run) -> list[str]:
    found = ((run.metrics or {}).get("test") or {}).get(KEY)
    return sorted(str(k) for k in found) if isinstance(found, dict) else []


def section_categories(section: Section) -> list[str]:
    """The categories any complete run of the section reports, sorted."""
    return sorted({c for g in section.groups for r in g.runs for c in run_categories(r)})


def all_categories(sections: list[Section]) -> list[str]:
    return sorted({c for s in sections for c in section_categories(s)})


def group_stat(group: Group, category: str) -> Stat:
    return summarise([run_value(r, category) for r in group.runs])


def category_table(section: Section, fmt) -> tuple[list[str], list[list[str]]] | None:
    """(headers, rows) of the section's by-category table, or None when its runs report no category.
    ``fmt(stat, digits)`` formats a cell (the leaderboard's)."""
    categories = section_categories(section)
    if not categories:
        return None
    headers = ["rank", "head", "supervision", "objective"] + (["settings"] if section.show_variant else [])
    headers += [f"frame AUC: {c}" for c in categories]
    rows = []
    for g in section.groups:
        row = [str(g.rank or "–"), g.head, g.supervision, g.objective] + (
            [g.settings] if section.show_variant else []
        )
        rows.append(row + [fmt(group_stat(g, c), 4) for c in categories])
    return headers, rows


NOTE = (
    "Frame AUC by anomaly category: for each category, the ROC-AUC over the frames of that category's abnormal "
    "test videos plus all normal test videos (the checkpoint selected on validation; mean ± std over seeds)."
)

"""The leaderboard as rows: ``runs.csv`` (one row per run), ``leaderboard.csv`` (one row per group, mean and
sample std of every metric) and ``leaderboard.md`` (per dataset × features: mean ± std, sorted by the dataset's
primary metric; the runs that did not finish listed below)."""

from __future__ import annotations

import csv
import io

from vadmil.report.aggregate import (
    COLUMNS,
    METRIC_TITLES,
    Column,
    Group,
    Section,
    Stat,
    column_title,
    metric_value,
)
from vadmil.report.categories import NOTE as CATEGORY_NOTE
from vadmil.report.categories import PREFIX as CATEGORY_PREFIX
from vadmil.report.categories import all_categories, category_table, group_stat, run_value
from vadmil.report.runs import Run, _get

NOTE = (
    "Supervision: weak = video-level labels (MIL); weak+pseudo-labels = self-training on snippet pseudo-labels; "
    "none = unsupervised, trained on the normal training videos only (selected on the normal validation videos' "
    "mean score, so it has no validation video AUC). "
    "Streams: the feature streams a row trained on (rgb = the store's video features; audio = the soundtrack's "
    "VGGish embedding), with their fusion (early: concatenated before the head; late: a head per stream). "
    "Test metrics are those of the checkpoint selected on validation (never on the test set), given as "
    "mean ± sample standard deviation over seeds (– : undefined, or a single run). The *oracle: best-on-test* "
    "column is the best test value of the primary metric over the checkpoints scored during training: it leaks "
    "the test set and is shown only for parity with published numbers. Fit time excludes those oracle "
    "evaluations; scoring throughput is test frames per second (feature reading, forward pass, frame expansion "
    "and metrics). Runs on different features are never ranked together."
)
TEXT_COLUMNS = ("head", "supervision", "streams", "objective", "settings")
_RUN_METRICS = [c for c in COLUMNS if c.key != "oracle_primary"] + [
    Column(f"oracle_{m}", f"oracle_test.{m}", "", 4) for m in METRIC_TITLES
]


def fmt(stat: Stat, digits: int) -> str:
    """``0.9344 ± 0.0121``; ``0.9344 ± –`` for one run; ``–`` for none."""
    if stat.mean is None:
        return "–"
    if digits == 0:
        mean = f"{stat.mean:,.0f}"
        if stat.std is None:
            return mean if stat.n == 1 else f"{mean} ± –"
        return mean if stat.std == 0 else f"{mean} ± {stat.std:,.0f}"
    std = "–" if stat.std is None else f"{stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {std}"


def runs_label(group: Group) -> str:
    bad = len(group.incomplete)
    return f"{len(group.runs)} (+{bad} failed)" if bad else str(len(group.runs))


def section_table(section: Section) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of one section, as shown in Markdown and HTML."""
    headers = ["rank", "head", "supervision", "streams", "objective"] + (
        ["settings"] if section.show_variant else []
    )
    headers += ["runs"]
    headers += [column_title(c, section.primary) for c in COLUMNS]
    rows = []
    for g in section.groups:
        row = [str(g.rank or "–"), g.head, g.supervision, g.streams, g.objective] + (
            [g.settings] if section.show_variant else []
        )
        row += [runs_label(g)] + [_cell(g.stat(c, section.primary), c.digits, len(g.runs)) for c in COLUMNS]
        rows.append(row)
    return headers, rows


def _cell(stat: Stat, digits: int, n_runs: int) -> str:
    """``fmt`` plus how many runs the value rests on when some runs lack it (NaN or missing): ``(n=2 of 3)``."""
    text = fmt(stat, digits)
    return f"{text} (n={stat.n} of {n_runs})" if 0 < stat.n < n_runs else text


_MARKDOWN_SPECIAL = set("\\`*_[]<>#|&~")  # what can start markup inside a table cell or a heading


def md(text) -> str:
    """Text shown literally in Markdown: every character that could start markup (emphasis, links, raw HTML,
    entities, table cells) backslash-escaped, line breaks flattened. Run names, ids and settings come from
    folder names and command lines, so they are never trusted as markup."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in " ".join(str(text).split()))


def section_note(section: Section) -> str:
    """The line under a section's title: primary metric, protocol, settings shared by every row."""
    note = f"Primary metric: {METRIC_TITLES.get(section.primary, section.primary)} (rows sorted by it). "
    note += f"Protocol: {protocols(section)}."
    if section.common_settings:
        note += f" Settings of every row: {section.common_settings}."
    return note


def protocols(section: Section) -> str:
    """The evaluation protocol(s) of a section's runs, e.g. ``end_inclusive=True, frame_span=video, FAR ≥ 0.5``."""
    seen = []
    for run in (r for g in section.groups for r in g.runs):
        p = run.metrics.get("eval_protocol") or {}
        text = (
            ", ".join(f"{k}={p.get(k, '?')}" for k in ("end_inclusive", "frame_span"))
            + f", FAR at ≥ {p.get('threshold')}"
        )
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def markdown(sections: list[Section], incomplete: list[Run]) -> str:
    out = ["# vadmil leaderboard", "", NOTE, ""]
    for section in sections:
        headers, rows = section_table(section)
        out += [f"## {md(section.title)}", ""]
        out += [md(section_note(section)), ""]
        out.append("| " + " | ".join(md(h) for h in headers) + " |")
        out.append("|" + "|".join("---" if h in TEXT_COLUMNS else "---:" for h in headers) + "|")
        out += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
        out.append("")
        by_category = category_table(section, fmt)
        if by_category:
            out += ["### Frame AUC by anomaly category", "", md(CATEGORY_NOTE), ""]
            out.append("| " + " | ".join(md(h) for h in by_category[0]) + " |")
            out.append("|" + "|".join("---" if h in TEXT_COLUMNS else "---:" for h in by_category[0]) + "|")
            out += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in by_category[1]]
            out.append("")
    if incomplete:
        out += [
            "## Runs that did not finish",
            "",
            "| run | status | dataset | head | seed | reason |",
            "|---|---|---|---|---:|---|",
        ]
        for run in incomplete:
            reason = run.error or "no metrics.json and no error.txt (killed or still running)"
            cells = (run.name, run.status, run.dataset, run.head, _seed(run), reason)
            out.append("| " + " | ".join(md(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def _seed(run: Run) -> str:
    return "–" if run.seed is None else str(run.seed)


def _number(value) -> str:
    return "" if value is None else repr(value)


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def runs_csv(runs: list[Run], placement: dict) -> str:
    """One row per run (``placement``: run path → (section, group) for the runs that belong to one)."""
    header = [
        "run",
        "status",
        "dataset",
        "features_id",
        "features",
        "head",
        "supervision",
        "streams",
        "objective",
        "objective_hash",
        "variant",
        "variant_hash",
        "seed",
        "primary_metric",
    ] + [c.key for c in _RUN_METRICS]
    header += ["selected_epoch", "oracle_epoch", "test_seconds", "store", "error"]  # fmt: skip
    categories = all_categories([s for s, _ in placement.values() if s is not None])
    header += [f"{CATEGORY_PREFIX}{c}" for c in categories]  # appended: earlier columns keep their places
    rows = []
    for run in runs:
        section, group = placement.get(run.path, (None, None))
        primary = section.primary if section else ""
        row = [run.name, run.status, run.dataset, section.features_id if section else "",
               section.features if section else "", run.head, run.supervision, run.streams,
               group.objective if group else "",
               group.objective_hash if group else "", group.variant if group else "",
               group.variant_hash if group else "", _seed(run) if run.seed is not None else "", primary]  # fmt: skip
        row += [_number(metric_value(run.metrics, c.path, primary)) for c in _RUN_METRICS]
        m = run.metrics or {}
        row += [_number(m.get("selected_epoch")), _number(_get(m, "oracle_test.epoch")),
                _number(m.get("test_seconds")), run.store or "", run.error or ""]  # fmt: skip
        row += [_number(run_value(run, c)) for c in categories]
        rows.append(row)
    return _csv(header, rows)


def leaderboard_csv(sections: list[Section]) -> str:
    """One row per group: identity, counts, and ``<column>_mean`` / ``<column>_std`` of every metric."""
    header = ["dataset", "features_id", "features", "primary_metric", "rank", "head", "supervision", "streams", "objective",
              "objective_hash", "variant", "variant_hash", "n_runs", "n_incomplete", "seeds"]  # fmt: skip
    header += [f"{c.key}_{s}" for c in COLUMNS for s in ("mean", "std", "n")]  # n: runs with a finite value
    categories = all_categories(sections)
    header += [f"{CATEGORY_PREFIX}{c}_{s}" for c in categories for s in ("mean", "std", "n")]  # appended
    rows = []
    for section in sections:
        for g in section.groups:
            seeds = " ".join(_seed(r) for r in g.runs)
            row = [section.dataset, section.features_id, section.features, section.primary, g.rank or "",
                   g.head, g.supervision, g.streams, g.objective, g.objective_hash, g.variant, g.variant_hash, len(g.runs),
                   len(g.incomplete), seeds]  # fmt: skip
            for c in COLUMNS:
                stat = g.stat(c, section.primary)
                row += [_number(stat.mean), _number(stat.std), stat.n]
            for c in categories:
                stat = group_stat(g, c)
                row += [_number(stat.mean), _number(stat.std), stat.n]
            rows.append(row)
    return _csv(header, rows)

"""Group runs into leaderboard rows and sections; mean ± sample std over seeds.

A *section* is one dataset on one set of features (:func:`vadmil.report.keys.features_key`): rankings never mix
features. Inside it a *group* (one row) is head × objective × variant; its complete runs are the seeds. Failed and
unfinished runs join the group whose store, head, objective and variant they share (their counts are shown), and
every one of them is listed apart as well.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from vadmil.report.keys import features_key, objective_key, variant_key
from vadmil.report.runs import Run, _get

PRIMARY_DEFAULTS = {"xd_violence": "frame_ap_trapz"}  # runs that predate metrics.json's primary_metric
METRIC_TITLES = {"frame_auc": "frame AUC", "frame_ap_trapz": "AP trapz", "frame_ap_step": "AP step"}


@dataclass(frozen=True)
class Column:
    """A numeric column: CSV ``key``, dotted ``path`` into metrics.json (``{primary}`` = the section's primary
    metric; ``a/b`` = the ratio of two paths), Markdown/HTML ``title``, decimals."""

    key: str
    path: str
    title: str
    digits: int


COLUMNS = (
    Column("test_frame_auc", "test.frame_auc", "frame AUC (val-selected)", 4),
    Column("test_frame_ap_trapz", "test.frame_ap_trapz", "AP trapz (val-selected)", 4),
    Column("test_frame_ap_step", "test.frame_ap_step", "AP step (val-selected)", 4),
    Column("test_frame_auc_abnormal", "test.frame_auc_abnormal", "AUC abnormal videos (val-selected)", 4),
    Column("test_far", "test.far", "FAR (val-selected)", 4),
    Column("val_video_auc", "validation.video_auc", "val video AUC", 4),
    Column("oracle_primary", "oracle_test.{primary}", "{primary} (oracle: best-on-test)", 4),
    Column("fit_seconds", "fit_seconds", "fit (s)", 1),
    Column("validation_share", "validation_seconds/fit_seconds", "validation share of fit", 2),
    Column("test_frames_per_second", "test_frames_per_second", "scoring (frames/s)", 0),
    Column("n_parameters", "n_parameters", "parameters", 0),
)


def column_title(column: Column, primary: str) -> str:
    return column.title.format(primary=METRIC_TITLES.get(primary, primary))


def metric_value(metrics: dict | None, path: str, primary: str) -> float | None:
    """A finite float at ``path`` of ``metrics``, else None (missing, NaN, not a number, a ratio over zero)."""
    if "/" in path:
        num, den = (metric_value(metrics, part, primary) for part in path.split("/", 1))
        return num / den if num is not None and den else None
    value = _get(metrics or {}, path.format(primary=primary))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample std (ddof = 1); None with fewer than two values
    n: int


def summarise(values: list[float | None]) -> Stat:
    finite = [v for v in values if v is not None]
    if not finite:
        return Stat(None, None, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Stat(statistics.fmean(finite), std, len(finite))


@dataclass
class Group:
    head: str
    objective: str
    objective_hash: str
    overrides: tuple[str, ...]  # the runs' command-line settings (see keys.variant_overrides)
    variant_hash: str
    supervision: str = "weak"  # see Run.supervision
    streams: str = "rgb"  # see Run.streams
    runs: list[Run] = field(default_factory=list)  # complete, sorted by seed then path
    incomplete: list[Run] = field(default_factory=list)  # failed or unfinished
    rank: int | None = None
    settings: str = ""  # the overrides that not every row of the section shares ("–": none)

    @property
    def variant(self) -> str:
        return " ".join(self.overrides) or "defaults"

    def stat(self, column: Column, primary: str) -> Stat:
        return summarise([metric_value(r.metrics, column.path, primary) for r in self.runs])

    def representative(self, primary: str) -> Run | None:
        """The run with the (lower) median test primary metric: whose curves stand for the group."""

        def value(run: Run) -> float:
            v = metric_value(run.metrics, f"test.{primary}", primary)
            return -math.inf if v is None else v

        scored = sorted(self.runs, key=value)  # stable: ties keep seed order
        return scored[(len(scored) - 1) // 2] if scored else None


@dataclass
class Section:
    dataset: str
    features_id: str
    features: str  # label, e.g. "i3d_r50 2048-d × 10 crops"
    primary: str
    groups: list[Group] = field(default_factory=list)
    stores: set[str] = field(default_factory=set)
    common_settings: str = ""  # overrides every row shares

    @property
    def title(self) -> str:
        return f"{self.dataset} — {self.features} (features {self.features_id})"

    @property
    def show_variant(self) -> bool:
        """Whether some head was run with more than one setting (then the settings are a column)."""
        variants: dict[str, set[str]] = {}
        for g in self.groups:
            variants.setdefault(g.head, set()).add(g.variant_hash)
        return any(len(v) > 1 for v in variants.values())

    def label(self, group: Group) -> str:
        """How a group is named in figures: its head, plus its streams and its objective where they tell it apart,
        plus its rank (``fcn #3``, the row of the table) where one head has rows of different settings."""
        label = group.head
        if sum(g.head == group.head for g in self.groups) > 1:
            if len({g.streams for g in self.groups if g.head == group.head}) > 1:
                label += f" [{group.streams}]"
            if len({g.objective for g in self.groups if g.head == group.head}) > 1:
                label += f" / {group.objective}"
            if self.show_variant:
                label += f" #{group.rank}" if group.rank else f" [{group.settings}]"
        return label


def build_sections(runs: list[Run]) -> tuple[list[Section], list[Run]]:
    """(sections sorted by dataset and features, each with ranked groups; incomplete runs matched to none)."""
    sections: dict[tuple[str, str], Section] = {}
    groups: dict[tuple, Group] = {}
    for run in (r for r in runs if r.status == "complete"):
        fid, label = features_key(run.metrics)
        primary = run.metrics.get("primary_metric") or PRIMARY_DEFAULTS.get(run.dataset, "frame_auc")
        section = sections.setdefault((run.dataset, fid), Section(run.dataset, fid, label, primary))
        if run.store:
            section.stores.add(run.store)
        _group(groups, section, run).runs.append(run)
    unmatched = []
    for run in (r for r in runs if r.status != "complete"):
        section = next(
            (s for s in sections.values() if s.dataset == run.dataset and run.store in s.stores), None
        )
        if section is None:
            unmatched.append(run)
        else:
            _group(groups, section, run).incomplete.append(run)
    for section in sections.values():
        _rank(section)
        _disambiguate(section)
    return [
        sections[k] for k in sorted(sections, key=lambda k: (k[0], sections[k].features, k[1]))
    ], unmatched


def _group(groups: dict, section: Section, run: Run) -> Group:
    objective, objective_hash = objective_key(run)
    variant_hash, overrides = variant_key(run)
    key = (
        section.dataset,
        section.features_id,
        run.head,
        run.supervision,
        run.streams,
        objective_hash,
        variant_hash,
    )
    if key not in groups:
        groups[key] = Group(
            run.head, objective, objective_hash, overrides, variant_hash, run.supervision, run.streams
        )
        section.groups.append(groups[key])
    return groups[key]


def _rank(section: Section) -> None:
    primary = Column("primary", f"test.{section.primary}", "", 4)
    for group in section.groups:
        group.runs.sort(key=lambda r: (r.seed if r.seed is not None else -1, r.name))
        group.incomplete.sort(key=lambda r: r.name)

    def order(group: Group):
        mean = group.stat(primary, section.primary).mean
        return (mean is None, -(mean or 0.0), group.head, group.objective, group.variant, group.variant_hash)

    section.groups.sort(key=order)
    rank = 0
    for group in section.groups:
        if group.stat(primary, section.primary).mean is not None:
            rank += 1
            group.rank = rank


def _disambiguate(section: Section) -> None:
    """Two objectives of one name (e.g. a changed loss weight) are shown as ``name#hash``; a row's settings are
    the overrides that not every row shares (those are the section's ``common_settings``)."""
    common = set.intersection(*(set(g.overrides) for g in section.groups)) if section.groups else set()
    section.common_settings = " ".join(sorted(common))
    for group in section.groups:
        group.settings = " ".join(_short(o) for o in group.overrides if o not in common) or "–"
    seen: dict[tuple[str, str, str], set[str]] = {}
    for group in section.groups:
        seen.setdefault((group.head, group.objective, group.settings), set()).add(group.variant_hash)
    for group in section.groups:  # settings that differ outside the overrides (e.g. an edited config file)
        if len(seen[(group.head, group.objective, group.settings)]) > 1:
            group.settings += f" #{group.variant_hash}"
    hashes: dict[str, set[str]] = {}
    for group in section.groups:
        hashes.setdefault(group.objective, set()).add(group.objective_hash)
    for group in section.groups:
        if len(hashes[group.objective]) > 1:
            group.objective = f"{group.objective}#{group.objective_hash}"


def _short(override: str) -> str:
    """``key=0.012520653814999465`` → ``key=0.01252`` for display (the CSV keeps the full value)."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}{sep}{number:.4g}" if "." in value or "e" in value.lower() else override

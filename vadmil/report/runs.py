"""Find run dirs under the given roots and read what each one recorded.

A run dir (written by `vadmil train`, alone or in a multirun) is a folder holding any of ``metrics.json``
(written last: the run finished), ``error.txt`` (the run failed; its one-line reason) or Hydra's
``.hydra/config.yaml`` (the run started). A run with neither of the first two is *unfinished* (killed, still
running, or its process died). Every file is read as plain YAML/JSON: a report needs neither the feature store nor
the annotations, so it works after the store has moved.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vadmil.errors import VadmilError
from vadmil.rundir import METRICS, PREDICTIONS, RunDir

STATUSES = ("complete", "failed", "unfinished")


@dataclass
class Run:
    """One run dir. ``config`` is the resolved ``config.yaml`` (else Hydra's unresolved one), ``choices`` Hydra's
    config-group choices (``model/objective: sultani``, ...), ``overrides`` the job's command-line overrides,
    ``metrics`` the parsed ``metrics.json`` (None unless complete)."""

    path: Path
    name: str  # shown in tables: the path relative to the parent of the root it was found under
    status: str
    error: str | None = None
    config: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    metrics: dict | None = None

    @property
    def dataset(self) -> str:
        if self.metrics:
            return str(self.metrics.get("dataset"))
        return str(_get(self.config, "dataset.name", "?"))

    @property
    def head(self) -> str:
        if self.metrics:
            return str(self.metrics.get("head"))
        return str(_get(self.config, "model.name", self.choices.get("model", "?")))

    @property
    def supervision(self) -> str:
        """``weak`` (MIL on video labels), ``weak+pseudo-labels`` (self-training) or ``none`` (unsupervised:
        normal training videos only); runs written before the key existed were all ``weak``."""
        if self.metrics and self.metrics.get("supervision"):
            return str(self.metrics["supervision"])
        if _get(self.config, "model.normal_only"):
            return "none"
        return "weak+pseudo-labels" if _get(self.config, "training.mode") == "self_training" else "weak"

    @property
    def streams(self) -> str:
        """The feature streams the run trained on, fused how: ``rgb``, ``audio``, ``rgb+audio (early)`` (runs
        written before streams existed used ``rgb``)."""
        recorded = _get(self.metrics or {}, "features.streams")
        names = (
            list(recorded)
            if isinstance(recorded, dict)
            else list(_get(self.config, "data.streams") or ["rgb"])
        )
        fusion = _get(self.metrics or {}, "features.fusion") or _get(self.config, "data.fusion") or "early"
        return "+".join(map(str, names)) + (f" ({fusion})" if len(names) > 1 else "")

    @property
    def seed(self) -> int | None:
        seed = self.metrics.get("seed") if self.metrics else _get(self.config, "seed")
        return seed if isinstance(seed, int) else None

    @property
    def store(self) -> str | None:
        """The feature store's path (complete runs: as recorded; others: from the resolved config, if any)."""
        if self.metrics:
            store = _get(self.metrics, "features.store")
            return store if isinstance(store, str) else None
        store = _get(self.config, "dataset.store")
        return store if isinstance(store, str) and "${" not in store else None


def _get(data: dict, dotted: str, default=None):
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _read_yaml(path: Path, default):
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):  # unreadable, not text (UnicodeDecodeError), not YAML
        return default
    return default if data is None else data


def is_run_dir(path: Path) -> bool:
    return RunDir(path).is_run()


def find_run_dirs(root: Path) -> list[Path]:
    """Every run dir at or below ``root``, sorted; hidden folders (``.submitit``, ``.hydra``) are not entered and
    nothing below a run dir is searched."""
    if is_run_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def load_run(path: Path, root: Path) -> Run:
    """Read one run dir (never raises on a damaged run: it becomes *failed* with the reason)."""
    run = Run(path=path, name=path.relative_to(root.parent).as_posix(), status="unfinished")
    files = RunDir(path)
    config = _read_yaml(files.config, None)
    run.config = config if isinstance(config, dict) else _read_yaml(files.hydra_config, {})
    hydra = _read_yaml(files.hydra_meta, {})
    choices = _get(hydra, "hydra.runtime.choices", {})
    run.choices = choices if isinstance(choices, dict) else {}
    overrides = _read_yaml(files.hydra_overrides, [])
    run.overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    if files.metrics.is_file():
        try:
            metrics = json.loads(files.metrics.read_text())
            problem = _metrics_problem(metrics) or _predictions_problem(files.predictions)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problem = f"unreadable {METRICS}: {' '.join(str(err).split())}"
        if problem:
            run.status, run.error = "failed", problem
        else:
            run.status, run.metrics = "complete", metrics
    elif files.error.is_file():
        run.status = "failed"
        try:
            run.error = " ".join(files.error.read_text(errors="replace").split()) or "(no reason recorded)"
        except OSError as err:
            run.error = f"unreadable {files.error.name}: {err}"
    return run


_SECTIONS = ("test", "validation", "features", "eval_protocol", "oracle_test")  # objects, when present


def _metrics_problem(metrics) -> str | None:
    """Why a parsed ``metrics.json`` cannot be reported (damaged or not written by vadmil), or None."""
    if not isinstance(metrics, dict):
        return f"{METRICS} holds a JSON {type(metrics).__name__}, not an object (damaged or not written by vadmil)"
    if "test" not in metrics:
        return f"{METRICS} has no test metrics (damaged or not written by `vadmil train`)"
    for key in _SECTIONS:
        if key in metrics and not isinstance(metrics[key], dict):
            return f"{METRICS}: '{key}' is a JSON {type(metrics[key]).__name__}, not an object (damaged?)"
    if not isinstance(metrics.get("primary_metric", ""), str | None):
        return f"{METRICS}: primary_metric is not a metric name"
    return None


def _predictions_problem(path: Path) -> str | None:
    """Why ``predictions.npz`` is damaged (truncated, or a member that fails its checksum), or None (also when
    absent: runs of older versions have none). Reads the whole archive once."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        return f"unreadable {PREDICTIONS} ({type(err).__name__}: {' '.join(str(err).split())})"
    return f"damaged {PREDICTIONS}: {bad} fails its checksum" if bad else None


def collect_runs(roots: list[str | Path]) -> list[Run]:
    """All runs under ``roots`` (each a dir of run dirs, a sweep dir, or one run dir), sorted by path; a run
    reachable from two roots is read once."""
    if not roots:
        raise VadmilError("report: no run dirs given; pass runs=<dir> or runs=[<dir>,<dir>]")
    runs: dict[Path, Run] = {}
    for root in roots:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise VadmilError(
                f"report: runs={root} is not a directory; point runs= at a sweep dir or at runs/"
            )
        for path in find_run_dirs(root):
            runs.setdefault(path, load_run(path, root))
    if not runs:
        raise VadmilError(
            f"report: no vadmil run dirs under {', '.join(str(r) for r in roots)} (a run dir holds metrics.json, "
            "error.txt or .hydra/config.yaml); point runs= at the dir that `vadmil train` wrote to"
        )
    return [runs[p] for p in sorted(runs)]

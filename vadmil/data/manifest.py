"""The generic manifest for your own data (``dataset=manifest``): one row per video giving its split, label and
anomalous frame intervals, as CSV or JSON. Rows are validated, never filtered: a mistyped split, a row with the
wrong number of columns or a malformed interval is an error naming ``file:line``."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from vadmil.data.labels import VideoLabel
from vadmil.data.parsing import HINT, add, intervals, read_text, video_id, warn_clipped
from vadmil.errors import VadmilError, check_choice

MANIFEST_FORMAT = "video_id,split,label[,intervals][,category] with label 0/1 and intervals 's-e;s-e'"
SPLITS = ("train", "test")  # a manifest's splits (validation videos are drawn from train: data.val_fraction)


def _manifest_rows(path: str) -> list[tuple[str, dict]]:
    """(where, row) pairs from a CSV or JSON manifest."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise VadmilError(f"manifest {path} must be a .csv or .json file {HINT}")
    text = read_text(path)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
        if not {"video_id", "split", "label"} <= set(reader.fieldnames):
            sep = (
                " (columns are separated by commas)"
                if re.search(r"[;\t ]", ",".join(reader.fieldnames))
                else ""
            )
            raise VadmilError(
                f"{path}:1: header must be '{MANIFEST_FORMAT}'{sep}, got '{','.join(reader.fieldnames)}'"
            )
        rows = []
        for r in reader:  # DictReader files surplus fields under None and fills missing ones with None
            where, n = f"{path}:{reader.line_num}", len(reader.fieldnames)
            if None in r or None in r.values():
                got = n + len(r.get(None) or ()) - sum(v is None for k, v in r.items() if k is not None)
                raise VadmilError(
                    f"{where}: {got} column(s) where the header has {n}; separate the columns with commas "
                    f"('{MANIFEST_FORMAT}') and quote values that contain one"
                )
            rows.append((where, {k: v.strip() for k, v in r.items()}))
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise VadmilError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix the file") from None
    rows = data.get("videos") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"video_id", "split", "label"} <= set(r) for r in rows
    ):
        raise VadmilError(
            f'{path}: expected [{{"video_id", "split", "label", ...}}, ...] or {{"videos": [...]}}'
        )
    return [(f"{path}: video entry {i}", r) for i, r in enumerate(rows, 1)]


def _manifest_intervals(value, where: str, clipped: list) -> tuple[tuple[int, int], ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):  # CSV form "s-e;s-e"
        parts = [p.strip() for p in value.split(";") if p.strip()]
        matches = [re.fullmatch(r"(-?\d+)\s*-\s*(\d+)", p) for p in parts]
        if not all(matches):
            raise VadmilError(
                f"{where}: intervals '{value}' must be 's-e;s-e' frame ranges, e.g. 120-250;400-512"
            )
        return intervals([g for m in matches for g in m.groups()], where, "s-e;s-e", clipped)
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise VadmilError(f"{where}: intervals must be a list of [start, end] pairs, got {value!r}")
    return intervals([x for p in value for x in p], where, "[[start, end], ...]", clipped)


def load_manifest(path: str, split: str | None = None) -> dict[str, VideoLabel]:
    """Generic manifest for your own data (CSV or JSON by extension); keeps the rows of ``split``. Every row is
    validated, those of other splits too: a mistyped split is an error, never a silently dropped row."""
    if split is not None:
        check_choice("split", split, SPLITS, f"manifest {path}")
    out: dict[str, VideoLabel] = {}
    splits: list[str] = []
    clipped: list[str] = []
    for where, row in _manifest_rows(path):
        row_split = str(row["split"]).strip()
        check_choice("split", row_split, SPLITS, where)
        splits += [row_split] if row_split not in splits else []
        vid = video_id(str(row["video_id"]), where)
        raw = row["label"]
        label = {"0": 0, "1": 1, "normal": 0, "abnormal": 1}.get(str(raw).strip().lower())
        if label is None:
            raise VadmilError(f"{where}: label {raw!r} of {vid} must be 0/1 or normal/abnormal; fix the row")
        pairs = _manifest_intervals(
            row.get("intervals"), where, clipped if split in (None, row_split) else []
        )
        if not label and pairs:
            raise VadmilError(f"{where}: normal video {vid} has intervals; fix its label or its intervals")
        if split in (None, row_split):
            add(out, VideoLabel(vid, label, pairs, category=str(row.get("category") or "")), where)
    warn_clipped(path, clipped)
    if split is not None and not out:
        raise VadmilError(
            f"manifest {path} has no row with split '{split}'; splits present: {', '.join(splits)}"
        )
    return out

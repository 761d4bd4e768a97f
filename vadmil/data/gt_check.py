"""Ground-truth check (`vadmil gt-check`): compare vadmil's rebuilt frame ground truth with a released concatenated gt-*.npy vector.

Released vectors (``gt-ucf.npy``, ``gt-sh.npy``; README, Working with real data) hold 0/1 per frame over all test videos in list
order, ``T x 16`` frames per video for one feature set's T. vadmil never trains or scores against them; this
command only checks them against the ground truth it rebuilds from the annotations and the store's geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadmil.data.labels import VideoLabel, frame_labels, normalise_video_id
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError

CONVENTIONS = {"true": True, "false": False}  # end_inclusive, as written in configs


def _show(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")


def load_released(path: str | Path) -> np.ndarray:
    """The released vector: 1-D, 0/1 per frame."""
    try:
        gt = np.load(path, allow_pickle=False)
    except Exception as e:  # missing, not NumPy, pickled objects, a damaged archive
        raise VadmilError(
            f"cannot read released ground truth {path} ({type(e).__name__}); give the gt-*.npy file"
        ) from None
    if not isinstance(gt, np.ndarray):  # an .npz archive of several arrays
        gt.close()
        raise VadmilError(
            f"released ground truth {path} is an .npz archive, not one array; give the concatenated per-frame "
            "gt-*.npy vector (or save the archive's array with numpy.save)"
        )
    if gt.ndim != 1 or not np.isin(gt, (0, 1)).all():
        raise VadmilError(
            f"released ground truth {path} must be a 1-D 0/1 vector, got shape {gt.shape} and values "
            f"{np.unique(gt)[:4].tolist()}; give the concatenated per-frame gt-*.npy"
        )
    return gt


def load_order(path: str | Path) -> list[str]:
    """Video ids of a list file (one path or id per line), in order; blank lines skipped, duplicates collapsed."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise VadmilError(f"cannot read video list {path} ({type(e).__name__}); set list=<file>") from None
    order = list(dict.fromkeys(normalise_video_id(s) for s in lines if s.strip()))
    if not order:
        raise VadmilError(f"video list {path} is empty; give the test list in the released vector's order")
    return order


def check_ground_truth(
    store: FeatureStore, videos: dict[str, VideoLabel], order: list[str], released: np.ndarray
) -> dict:
    """Walk ``released`` in ``order`` (span per video: T x stride, or n_frames for a pooled store) and count the
    frames where it differs from ``frame_labels`` for each end convention. Returns {"summary", "videos"}."""
    not_stored = [v for v in order if v not in store]
    not_annotated = [v for v in order if v not in videos]
    if not_stored or not_annotated:
        where = ((not_stored, f"in feature store {store.path}"), (not_annotated, "in the test annotations"))
        parts = [f"{len(ids)} not {place}: {_show(ids)}" for ids, place in where if ids]
        raise VadmilError(
            f"of the {len(order)} listed videos, {'; '.join(parts)}; use the test list the release was made "
            "from, and the matching dataset.store and annotations"
        )
    geo, pooled = store.geometry, store.pooled
    n_snip, n_frames = {v: store.n_snippets(v) for v in order}, {v: store.n_frames(v) for v in order}
    totals = {} if pooled else {"snippets_x_stride": sum(t * geo.stride for t in n_snip.values())}
    totals["n_frames"] = sum(n_frames.values())
    rows, offset = [], 0
    for vid in order:
        span = n_frames[vid] if pooled else n_snip[vid] * geo.stride
        row = {"video_id": vid, "offset": offset, "span": span, "checked": offset + span <= len(released)}
        if row["checked"]:
            segment = released[offset : offset + span]
            rebuilt = {k: frame_labels(videos[vid], span, inc) for k, inc in CONVENTIONS.items()}
            row["released_anomalous"] = int(segment.sum())
            row["rebuilt_anomalous"] = {k: int(r.sum()) for k, r in rebuilt.items()}
            row["mismatches"] = {k: int((segment != r).sum()) for k, r in rebuilt.items()}
        rows.append(row)
        offset += span
    checked = [r for r in rows if r["checked"]]
    counts = {k: [r["mismatches"][k] for r in checked] for k in CONVENTIONS}
    conventions = {k: {"videos": sum(n > 0 for n in c), "frames": sum(c)} for k, c in counts.items()}
    best = min(CONVENTIONS, key=lambda k: conventions[k]["frames"])  # a tie keeps "true"
    summary = {
        "videos": len(order),
        "checked": len(checked),
        "span": "n_frames" if pooled else f"snippets x stride ({geo.stride})",
        "expected_frames": offset,
        "released_frames": int(len(released)),
        "length_difference": int(len(released)) - offset,
        "totals": totals,
        "end_inclusive": conventions,
        "best": best,
        "tie": conventions["true"]["frames"] == conventions["false"]["frames"],
    }
    summary["exact"] = summary["length_difference"] == 0 and conventions[best]["frames"] == 0
    return {"summary": summary, "videos": rows}


def verdict(result: dict) -> str:
    """The last report line: which end convention the release matches best."""
    s = result["summary"]
    if not s["checked"]:
        return "no video lies within the released vector: nothing was compared"
    c = s["end_inclusive"][s["best"]]
    how = "exactly" if not c["frames"] else f"with {c['frames']} mismatching frames in {c['videos']} videos"
    who = "both end conventions (they agree here)" if s["tie"] else f"end_inclusive={s['best']}"
    partial = "" if s["checked"] == s["videos"] else f" on the {s['checked']} videos within the vector"
    return f"the release matches {who} {how}{partial}"


def report_lines(result: dict, worst: int = 10) -> list[str]:
    s, rows = result["summary"], result["videos"]
    diff, totals = s["length_difference"], ", ".join(f"{k} {v}" for k, v in s["totals"].items())
    lines = [
        f"videos: {s['videos']} listed, {s['checked']} checked (span per video: {s['span']})",
        f"frames: expected {s['expected_frames']}, released {s['released_frames']}"
        + ("" if not diff else f": {abs(diff)} {'more' if diff > 0 else 'fewer'}; totals by span: {totals}"),
    ]
    same = [k for k, v in s["totals"].items() if v == s["released_frames"]]
    if diff and same:
        lines.append(f"  the released length equals the sum of {same[0]}: the release used that span")
    if s["checked"] < s["videos"]:
        lines.append(
            f"  {s['videos'] - s['checked']} videos lie (partly) past the vector's end: not compared"
        )
    for k, c in s["end_inclusive"].items():
        lines.append(f"end_inclusive={k:<5}: {c['videos']} videos, {c['frames']} frames mismatch")
    other = "false" if s["best"] == "true" else "true"
    bad = [r for r in rows if r["checked"] and max(r["mismatches"].values())]
    bad.sort(key=lambda r: (-r["mismatches"][s["best"]], -r["mismatches"][other]))
    if bad:
        lines.append(f"worst videos (rebuilt / mismatches: end_inclusive={s['best']} | {other}):")
        lines.append(f"  {'video':<32}{'span':>8}{'released':>10}{'rebuilt':>16}{'mismatches':>14}")
        for r in bad[:worst]:
            reb, mis = (f"{r[k][s['best']]} | {r[k][other]}" for k in ("rebuilt_anomalous", "mismatches"))
            vid, span, rel = r["video_id"], r["span"], r["released_anomalous"]
            lines.append(f"  {vid:<32}{span:>8}{rel:>10}{reb:>16}{mis:>14}")
    return [*lines, verdict(result)]

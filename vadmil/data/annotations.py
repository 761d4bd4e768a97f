"""Parsers of each dataset's own annotation files (UCF-Crime, ShanghaiTech, XD-Violence, video lists, manifests).

Labels are never stored with features (docs/design.md): every loader returns ``{video_id: VideoLabel}`` in file
order, keyed by :func:`~vadmil.data.labels.normalise_video_id`, and the feature store is joined on that id. The
formats are described in the README ("Annotation formats").
"""

import re
from pathlib import Path

import numpy as np

from vadmil.data.labels import VideoLabel, normalise_video_id
from vadmil.data.manifest import MANIFEST_FORMAT, SPLITS, load_manifest
from vadmil.data.parsing import HINT as _HINT
from vadmil.data.parsing import add as _add
from vadmil.data.parsing import intervals as _intervals
from vadmil.data.parsing import read_lines as _read_lines
from vadmil.data.parsing import show as _show
from vadmil.data.parsing import video_id as _vid
from vadmil.data.parsing import warn_clipped as _warn_clipped
from vadmil.errors import VadmilError

__all__ = ["MANIFEST_FORMAT", "SPLITS", "load_manifest", "load_shanghaitech_masks", "load_ucf_crime",
           "load_ucf_crime_list", "load_video_list", "load_xd_violence"]  # fmt: skip
UCF_FORMAT = "<video>.mp4 <Class> s1 e1 s2 e2 (frame indices, -1 for an absent pair)"
XD_FORMAT = "<name> s1 e1 [s2 e2 ...]"


def load_ucf_crime(path: str) -> dict[str, VideoLabel]:
    """UCF-Crime temporal annotation (test): ``<video>.mp4 <Class> s1 e1 s2 e2`` per line, -1 if absent."""
    out: dict[str, VideoLabel] = {}
    clipped: list[str] = []
    for n, line in _read_lines(path):
        where, tok = f"{path}:{n}", line.split()
        if len(tok) < 2 or re.fullmatch(r"-?\d+", tok[1]):
            raise VadmilError(f"{where}: expected '{UCF_FORMAT}', got '{line}'")
        vid, category = _vid(tok[0], where), tok[1]
        pairs = _intervals(tok[2:], where, UCF_FORMAT, clipped)
        label = int(category.lower() != "normal")
        if label and not pairs:
            raise VadmilError(
                f"{where}: abnormal video {vid} has no temporal annotation (all pairs -1); frame-level "
                "evaluation needs one — add its intervals"
            )
        if not label and pairs:
            raise VadmilError(f"{where}: normal video {vid} has intervals; write -1 -1 or fix its class")
        _add(out, VideoLabel(vid, label, pairs, category=category), where)
    _warn_clipped(path, clipped)
    return out


def load_ucf_crime_list(path: str) -> dict[str, VideoLabel]:
    """Official UCF-Crime video list (``Abuse/Abuse001_x264.mp4`` per line).

    Labels follow the dataset's own naming convention: normal when the folder contains "Normal" or the name
    starts with "Normal_Videos"; otherwise abnormal, class = the folder (or the name's leading letters).
    """
    out: dict[str, VideoLabel] = {}
    for n, line in _read_lines(path):
        where = f"{path}:{n}"
        if len(line.split()) != 1:
            raise VadmilError(
                f"{where}: expected one path per line like 'Abuse/Abuse001_x264.mp4', got '{line}'"
            )
        parts = re.split(r"[/\\]", line)
        folder, vid = (parts[-2] if len(parts) > 1 else ""), _vid(line, where)
        if "Normal" in folder or vid.startswith("Normal_Videos"):
            label, category = 0, "Normal"
        else:
            letters = re.match(r"[A-Za-z]+", vid)
            label, category = 1, folder or (letters.group(0) if letters else "")
            if not category:
                raise VadmilError(f"{where}: no class in '{line}'; write it as '<Class>/<video>.mp4'")
        _add(out, VideoLabel(vid, label, category=category), where)
    return out


def load_video_list(
    path: str, abnormal_first: int | None = None, label: int | None = None
) -> dict[str, VideoLabel]:
    """Generic list, one path or id per line (RTFM style).

    ``abnormal_first=N``: the first N videos (distinct ids) are abnormal, the rest normal (the RTFM list
    convention, made explicit); ``label``: every video has this label.
    """
    if (abnormal_first is None) == (label is None):
        raise VadmilError(
            f"video list {path}: give exactly one of abnormal_first=N (the first N videos are abnormal, "
            "the rest normal) or label=0|1 (every video has this label), "
            "e.g. dataset.annotations.<split>.abnormal_first=810"
        )
    # Per-crop lists name each video several times; the ids collapse to one entry, first occurrence first.
    ids = list(dict.fromkeys(_vid(line, f"{path}:{n}") for n, line in _read_lines(path)))
    if label is not None:
        if label not in (0, 1):
            raise VadmilError(f"video list {path}: label must be 0 (normal) or 1 (abnormal), got {label!r}")
        labels = [int(label)] * len(ids)
    else:
        if not 0 <= abnormal_first <= len(ids):
            raise VadmilError(
                f"video list {path} has {len(ids)} videos, fewer than abnormal_first={abnormal_first}; "
                "set it to the number of abnormal videos heading the list"
            )
        labels = [1] * abnormal_first + [0] * (len(ids) - abnormal_first)
    return {v: VideoLabel(v, lab) for v, lab in zip(ids, labels, strict=True)}


def load_shanghaitech_masks(path: str, ids_path: str | None = None) -> dict[str, VideoLabel]:
    """Folder of per-video frame masks ``<scene>_<id>.npy`` (0/1 per frame, [F]); label = mask.any().
    With ``ids_path`` (a list file) only the listed videos are loaded, in list order."""
    if path is None or not Path(path).is_dir():
        raise VadmilError(f"ShanghaiTech mask folder {path} does not exist {_HINT}")
    files: dict[str, Path] = {}
    for f in sorted(Path(path).glob("*.npy")):
        if (other := files.setdefault(normalise_video_id(f.name), f)) != f:
            raise VadmilError(f"{f} and {other} are masks of the same video; keep one")
    if not files:
        raise VadmilError(f"mask folder {path} has no <scene>_<id>.npy files; point to the frame-mask folder")
    if ids_path is not None:
        wanted = list(dict.fromkeys(_vid(line, f"{ids_path}:{n}") for n, line in _read_lines(ids_path)))
        missing = [v for v in wanted if v not in files]
        if missing:
            raise VadmilError(
                f"mask folder {path} has no mask for {len(missing)} video(s) listed in {ids_path}: "
                f"{_show(missing)}; add their masks or remove them from the list"
            )
        files = {v: files[v] for v in wanted}
    out: dict[str, VideoLabel] = {}
    for vid, f in files.items():
        try:
            mask = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise VadmilError(
                f"cannot read mask {f} ({type(e).__name__}); re-save it with numpy.save"
            ) from None
        if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
            raise VadmilError(
                f"mask {f} must be 1-D with 0/1 per frame, got shape {mask.shape} and values "
                f"{np.unique(mask)[:4].tolist()}; re-save it as a 1-D uint8 0/1 array"
            )
        out[vid] = VideoLabel(vid, int(mask.any()), mask=mask)
    return out


def _xd_label(vid: str, where: str) -> tuple[int, str]:
    _, sep, category = vid.rpartition("_label_")
    if not sep or not category:
        raise VadmilError(
            f"{where}: XD-Violence name '{vid}' lacks '_label_<classes>'; use the official names"
        )
    return int(category.split("-")[0] != "A"), category


def load_xd_violence(path: str, annotation_path: str | None = None) -> dict[str, VideoLabel]:
    """XD-Violence list of names or paths; labels come from the official names (``_label_A`` is normal, else
    the text after ``_label_`` is the violence category). With ``annotation_path`` (``annotations.txt``) every
    violent video of the list gets its intervals."""
    out: dict[str, VideoLabel] = {}
    for n, line in _read_lines(path):
        vid = _vid(line, f"{path}:{n}")
        label, category = _xd_label(vid, f"{path}:{n}")
        out.setdefault(vid, VideoLabel(vid, label, category=category))  # per-crop entries collapse
    if annotation_path is None:
        return out
    found: dict[str, tuple[tuple[int, int], ...]] = {}
    clipped: list[str] = []
    for n, line in _read_lines(annotation_path):
        where, tok = f"{annotation_path}:{n}", line.split()
        k = len(tok)  # the name is everything before the trailing integers
        while k > 1 and re.fullmatch(r"-?\d+", tok[k - 1]):
            k -= 1
        vid = _vid(" ".join(tok[:k]), where)
        pairs = _intervals(tok[k:], where, XD_FORMAT, clipped)
        if not pairs:
            raise VadmilError(f"{where}: no interval for {vid}; expected '{XD_FORMAT}'")
        if _xd_label(vid, where)[0] == 0:
            raise VadmilError(f"{where}: {vid} is a normal (_label_A) video with intervals; remove the line")
        if found.setdefault(vid, pairs) != pairs:
            raise VadmilError(f"{where}: video {vid} appears again with different intervals; keep one line")
    _warn_clipped(annotation_path, clipped)
    missing = [v for v, x in out.items() if x.label and v not in found]
    if missing:
        raise VadmilError(
            f"{annotation_path} has no intervals for {len(missing)} violent video(s) of {path}: "
            f"{_show(missing)}; "
            "add their lines or use the list that matches the annotation file"
        )
    return {v: VideoLabel(v, x.label, found.get(v, ()), category=x.category) for v, x in out.items()}

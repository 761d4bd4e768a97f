"""The base of `vadmil import`'s format readers (:mod:`vadmil.data.importers`): one video's files, the loaded video,
the checks every public feature file goes through, and :class:`FeatureReader` (input resolution and the generic
layout: one ``.npy`` per video, [T, D] or [T, C, D]).

A reader resolves its ``input`` (a folder, a text list of paths, or one feature file), then:

- :meth:`FeatureReader.plan` finds and groups each video's files and catches layout problems (missing crops,
  duplicate ids, a bad first file) before the store is touched; it reads at most one array header;
- :meth:`FeatureReader.load` reads one video as float32 [T, C, D], so memory is bounded by the largest video
  whatever the data set size.

Every input problem raises :class:`VadmilError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from vadmil.data.labels import normalise_video_id
from vadmil.errors import VadmilError


@dataclass(frozen=True)
class VideoFiles:
    """One video's files: ``features`` one file, or one per crop in crop order (Wu); ``audio`` Wu's VGGish."""

    video_id: str
    features: tuple[Path, ...]
    audio: Path | None = None


@dataclass
class ImportedVideo:
    """One loaded video: ``features`` float32 [T, C, D]; ``extra`` named streams, e.g. ``{"audio": [T_a, 128]}``;
    ``source`` the file(s) it came from, ";"-joined."""

    video_id: str
    features: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""


def crop_names_for(n: int, names: tuple[str, ...] = ()) -> list[str]:
    """A layout's crop names when the count fits it (all of them, or the first 5 of 10), else crop0..crop{n-1}."""
    known = n == len(names) or (len(names) == 10 and n == 5)
    return list(names[:n]) if known else [f"crop{i}" for i in range(n)]


def open_array(path: Path, mmap: bool = False) -> np.ndarray:
    """The array in ``path`` (memory-mapped, i.e. only the header read, when ``mmap``), refused unless numeric."""
    try:  # allow_pickle=False: a pickled object array can run code, and is not features anyway
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        why = " ".join(str(e).split())[:150]
        raise VadmilError(
            f"{path} is not a readable .npy array ({why}); re-save it with numpy.save"
        ) from None
    if not isinstance(arr, np.ndarray):  # np.load opens .npz archives too
        arr.close()
        raise VadmilError(f"{path} is an .npz archive, not an .npy array; save each video with numpy.save")
    if arr.dtype.kind not in "fiu":  # ints and float64 are converted; bool, complex, strings are not features
        raise VadmilError(f"{path} holds {arr.dtype} values, not real numbers; save the features as float32")
    return arr


def array_dims(shape: tuple[int, ...], path: Path, ndims: tuple[int, ...] = (2, 3)) -> tuple[int, int]:
    """(C, D) of an array [T, D] (C = 1) or [T, C, D]."""
    if len(shape) not in ndims:
        want = " or ".join(["[T, D]", "[T, C, D]"][n - 2] for n in ndims)
        raise VadmilError(f"{path} has shape {list(shape)}; expected {want} — re-export it")
    if 0 in shape:
        raise VadmilError(f"{path} is empty (shape {list(shape)}); re-extract the video or leave it out")
    return (1 if len(shape) == 2 else shape[1]), shape[-1]


def as_float32(arr: np.ndarray, path: Path) -> np.ndarray:
    """float32, C-contiguous; refused if any snippet (index of axis 0) holds NaN/Inf."""
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: refused just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).reshape(len(out), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise VadmilError(
            f"{path} has NaN/Inf values in {len(bad)} of {len(out)} snippets (first: snippet {bad[0]}); "
            "re-extract the video or leave it out"
        )
    return out


class FeatureReader:
    """Base reader: input resolution, shared checks, and the generic layout (one ``.npy`` per video, [T, D] or
    [T, C, D]).

    ``input``: a folder (files matching ``pattern``; subfolders too when ``recursive``), a list file (one path a
    line, relative to the list's folder; with ``root``, each listed file's basename is looked up in ``root``
    instead: published lists hold absolute paths from the authors' machines) or one feature file.
    ``crop_order``, ``n_crops`` and ``feature_dim`` are known after :meth:`plan`.
    """

    format = "npy"
    pooled = False
    pattern = "*.npy"  # folder glob; also tells one feature file from a list file
    crop_names: tuple[str, ...] = ()

    def __init__(self, input: str, root: str | None = None, recursive: bool = False):
        self.input = Path(str(input)).expanduser()  # Hydra hands plain strings
        self.root = Path(str(root)).expanduser() if root not in (None, "") else None
        self.recursive = bool(recursive)
        self.crop_order: list[str] = []
        # First value of each per-store quantity and the file it came from: a store holds one C and one D.
        self._ref: dict[str, tuple[int, Path]] = {}

    @property
    def n_crops(self) -> int | None:
        return self._ref.get("crops", (None,))[0]

    @property
    def feature_dim(self) -> int | None:
        return self._ref.get("dim", (None,))[0]

    def _files(self) -> list[Path]:
        src = self.input
        if not src.exists():
            raise VadmilError(
                f"input {src} does not exist; give a folder, a list file or one {self.pattern} file"
            )
        if src.is_dir():
            files = sorted(
                p for p in (src.rglob if self.recursive else src.glob)(self.pattern) if p.is_file()
            )
            if not files:
                hint = "" if self.recursive else " (add recursive=true to search subfolders)"
                raise VadmilError(f"no {self.pattern} files in {src}{hint}; check input= and format=")
            return files
        return [src] if fnmatch(src.name, self.pattern) else self._read_list()

    def _read_list(self) -> list[Path]:
        try:
            lines = self.input.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise VadmilError(
                f"cannot read {self.input} as a list file ({type(e).__name__}); give a folder, a text file with "
                f"one path a line, or one {self.pattern} file"
            ) from None
        if self.root is not None and not self.root.is_dir():
            raise VadmilError(f"root {self.root} is not a folder; set root= to the folder holding the files")
        files, missing = [], []
        for n, entry in enumerate(map(str.strip, lines), 1):
            if not entry:
                continue
            if self.root is not None:  # Windows paths too: split on both separators
                path = self.root / re.split(r"[/\\]", entry)[-1]
            else:
                path = self.input.parent / Path(entry).expanduser()  # an absolute entry replaces the parent
            (files if path.is_file() else missing).append((n, path))
        if missing:
            n, path = missing[0]
            hint = "check root=" if self.root else "pass root=<folder> to look each file's name up there"
            raise VadmilError(
                f"{len(missing)} file(s) listed in {self.input} do not exist, first {str(path)[:200]} "
                f"(line {n}); {hint}"
            )
        if not files:
            raise VadmilError(f"no {self.pattern} files in {self.input}; the list file is empty")
        return [path for _, path in files]

    def _no_duplicates(self, groups: dict[str, list[Path]]) -> None:
        dups = [f"{key}: {', '.join(map(str, paths))}" for key, paths in groups.items() if len(paths) > 1]
        if dups:
            raise VadmilError(
                f"{len(dups)} duplicate video id(s) in {self.input} ({'; '.join(dups[:3])}); keep one file "
                "per video (remove, rename or unlist the others)"
            )

    def _same(self, key: str, value: int, path: Path) -> None:
        """Record the first ``key`` (crops, dim, ...) seen; refuse a file that differs from it."""
        ref, ref_path = self._ref.setdefault(key, (value, path))
        if key == "crops" and not self.crop_order:
            self.crop_order = crop_names_for(value, self.crop_names)
        if value != ref:
            what = {"crops": "crop count C", "dim": "feature size D"}.get(key, key)
            raise VadmilError(
                f"{path} has {what} {value} but {ref_path} has {ref}; a store holds one {what} — import "
                "these features into separate stores"
            )

    def video_id(self, path: Path) -> str:
        """The id of a feature file: its name less this format's extension (``pattern``'s, so a new format's
        extension needs no registration), then normalised (:func:`~vadmil.data.labels.normalise_video_id`)."""
        ext = Path(self.pattern).suffix
        name = path.name[: -len(ext)] if ext and path.name.endswith(ext) else path.name
        try:
            return normalise_video_id(name)
        except VadmilError:  # e.g. "..npy": "." and ".." are no names (they would wedge the store)
            raise VadmilError(
                f"{path}: cannot derive a video id from the file name '{path.name}'; name each file <video_id>{ext}"
            ) from None

    def plan(self) -> list[VideoFiles]:
        """Every video, sorted by id; reads only the first file's header (to learn C and D)."""
        groups: dict[str, list[Path]] = {}
        for path in self._files():
            groups.setdefault(self.video_id(path), []).append(path)
        self._no_duplicates(groups)
        videos = [VideoFiles(vid, (paths[0],)) for vid, paths in sorted(groups.items())]
        self._peek(videos[0].features[0])
        return videos

    def _peek(self, path: Path) -> None:
        crops, dim = array_dims(open_array(path, mmap=True).shape, path)
        self._same("crops", crops, path)
        self._same("dim", dim, path)

    def load(self, video: VideoFiles) -> ImportedVideo:
        """One video as float32 [T, C, D] ([T, D] files give C = 1)."""
        path = video.features[0]
        arr = open_array(path)
        crops, dim = array_dims(arr.shape, path)
        self._same("crops", crops, path)
        self._same("dim", dim, path)
        return ImportedVideo(
            video.video_id, as_float32(arr.reshape(len(arr), crops, dim), path), {}, str(path)
        )

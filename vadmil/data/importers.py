"""Readers for the public feature layouts users already have on disk (README, Working with real data), driven by
`vadmil import` (``conf/format/<name>.yaml`` names one). The shared input resolution and checks are in
:mod:`vadmil.data.feature_files`; each reader here knows one family's file names, crop order and array shapes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vadmil.data.feature_files import (
    FeatureReader,
    ImportedVideo,
    VideoFiles,
    array_dims,
    as_float32,
    crop_names_for,
    open_array,
)
from vadmil.data.labels import normalise_video_id
from vadmil.errors import VadmilError

# torchvision TenCrop (RTFM family): four corners, centre, then the same five of the mirrored frame.
TENCROP_ORDER = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
TENCROP_ORDER += tuple(f"{name}_flip" for name in TENCROP_ORDER)
# Wu et al. (UCF 10 crops, XD-Violence 5): centre first, then the corners, then the mirrored five.
WU_ORDER = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
WU_ORDER += tuple(f"{name}_flip" for name in WU_ORDER)


class NpyReader(FeatureReader):
    """Any ``.npy`` arrays [T, D] or [T, C, D], one per video; crops named ``crop0..``."""


class RTFMReader(FeatureReader):
    """RTFM family: ``<video>_i3d.npy`` [T, 10, D] (TenCrop), [T, 5, D] or [T, D]."""

    format = "rtfm"
    crop_names = TENCROP_ORDER


class WuReader(FeatureReader):
    """Wu family: one ``<video>__<c>.npy`` [T, D] per crop c = 0..n_crops-1, stacked to [T, n_crops, D]; with
    ``audio``, an optional ``<video>__vggish.npy`` [T_a, 128] becomes the ``audio`` stream (``extra["audio"]``)."""

    format = "wu"
    pattern = "*__*.npy"
    crop_names = WU_ORDER
    _NAME = re.compile(r"^(.+)__(\d+|vggish)\.npy$")

    def __init__(
        self, input: str, n_crops: int = 10, audio: bool = True, root: str | None = None, recursive=False
    ):
        super().__init__(input, root, recursive)
        if int(n_crops) < 1:
            raise VadmilError(f"n_crops must be at least 1, got {n_crops}")
        self.audio, self._crops = bool(audio), int(n_crops)
        self.crop_order = crop_names_for(self._crops, WU_ORDER)

    def plan(self) -> list[VideoFiles]:
        crops: dict[str, dict[int, list[Path]]] = {}
        audio: dict[str, list[Path]] = {}
        for path in self._files():
            m = self._NAME.match(path.name)
            if not m:
                raise VadmilError(
                    f"{path} is not named <video>__<crop>.npy or <video>__vggish.npy; rename it"
                )
            vid = normalise_video_id(path.name)
            if m[2] != "vggish":
                crops.setdefault(vid, {}).setdefault(int(m[2]), []).append(path)
            elif self.audio:
                audio.setdefault(vid, []).append(path)
        groups = {f"{v} crop {c}": ps for v, by_crop in crops.items() for c, ps in by_crop.items()}
        self._no_duplicates(groups | {f"{v} vggish": ps for v, ps in audio.items()})
        orphans = sorted(set(audio) - set(crops))
        if orphans:
            raise VadmilError(
                f"{audio[orphans[0]][0]} has no crop files ({orphans[0]}__0.npy, ...); add them"
            )
        n = self._crops
        for vid, by_crop in sorted(crops.items()):
            gaps = (
                ("missing", sorted(set(range(n)) - set(by_crop))),
                ("extra", sorted(set(by_crop) - set(range(n)))),
            )
            wrong = [f"{kind} crops {cs}" for kind, cs in gaps if cs]
            if wrong:
                raise VadmilError(
                    f"video {vid} in {self.input} has {' and '.join(wrong)}; expected {vid}__0.npy .. "
                    f"{vid}__{n - 1}.npy (set n_crops= to the number of crops)"
                )
        videos = [
            VideoFiles(vid, tuple(by_crop[c][0] for c in range(n)), audio.get(vid, [None])[0])
            for vid, by_crop in sorted(crops.items())
        ]
        self._peek(videos[0].features[0])
        return videos

    def _peek(self, path: Path) -> None:
        self._same("crops", self._crops, path)
        self._same("dim", array_dims(open_array(path, mmap=True).shape, path, ndims=(2,))[1], path)

    def load(self, video: VideoFiles) -> ImportedVideo:
        first, feats = video.features[0], None
        for c, path in enumerate(video.features):  # one crop file in memory beside the output
            arr = open_array(path)
            array_dims(arr.shape, path, ndims=(2,))
            self._same("dim", arr.shape[1], path)
            if feats is None:
                self._same("crops", len(video.features), path)
                feats = np.empty((len(arr), len(video.features), arr.shape[1]), dtype=np.float32)
            if len(arr) != len(feats):
                raise VadmilError(
                    f"{path} has T={len(arr)} snippets but {first} has T={len(feats)}; all crops of a video "
                    "must have the same length — re-extract the video"
                )
            feats[:, c] = as_float32(arr, path)
        extra = {}
        if video.audio is not None:  # its length T_a may differ from T: the audio has its own snippet rate
            arr = open_array(video.audio)
            self._same("vggish feature size", array_dims(arr.shape, video.audio, ndims=(2,))[1], video.audio)
            extra["audio"] = as_float32(arr, video.audio)
        files = [*video.features, *([video.audio] if video.audio else [])]
        return ImportedVideo(video.video_id, feats, extra, ";".join(map(str, files)))


class SultaniReader(FeatureReader):
    """Sultani et al.: ``<video>_C.txt``, 32 rows (segments) x 4096 values, already segment-pooled and
    normalised → [32, 1, 4096]."""

    format = "sultani"
    pooled = True
    pattern = "*_C.txt"
    crop_names = ("center",)
    ROWS, COLS = 32, 4096

    def _peek(self, path: Path) -> None:
        self._same("crops", 1, path)  # text has no cheap header: each file is checked when loaded
        self._same("dim", self.COLS, path)

    def load(self, video: VideoFiles) -> ImportedVideo:
        path = video.features[0]
        try:
            rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise VadmilError(f"cannot read {path} as text ({type(e).__name__}); re-export it") from None
        widths = sorted({len(r) for r in rows})
        if len(rows) != self.ROWS or widths != [self.COLS]:
            raise VadmilError(
                f"{path} has {len(rows)} rows x {'/'.join(map(str, widths)) or 0} values; a Sultani file holds "
                f"{self.ROWS} rows x {self.COLS} values (one row per segment)"
            )
        try:
            arr = np.array(rows, dtype=np.float64)
        except ValueError:
            raise VadmilError(f"{path} contains a value that is not a number; re-export it") from None
        self._peek(path)
        return ImportedVideo(video.video_id, as_float32(arr, path)[:, None, :], {}, str(path))

"""The HDF5 feature store (schema v1): the only link between feature extraction and training.

Layout::

    /                      root attributes: the recipe (schema_version, backbone, feature_dim, n_crops, ...)
    /videos/<video_id>/    one group per video
        features           dataset [T, C, D] (float16 or float32), uncompressed, chunked per video
        attrs              n_frames, fps, source, mean_norm, complete (set last, after the data is written)

A video counts only once its ``complete`` flag is set; a re-append replaces an incomplete video, so a killed
writer never leaves data that readers would mistake for finished. The file uses HDF5's default format (files
written with ``libver="latest"`` do not reopen after a kill). Handles are opened lazily and reopened after a
fork, so one ``FeatureStore`` can be handed to DataLoader workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from vadmil import __version__
from vadmil.data.geometry import SnippetGeometry
from vadmil.errors import VadmilError

SCHEMA_VERSION = 1
VIDEOS = "videos"
# The recipe: root attributes every store carries. Two stores (or a store and a config) with different recipes
# hold features that must not be mixed.
RECIPE_KEYS = (
    "backbone",
    "feature_dim",
    "n_crops",
    "crop_order",
    "snippet_len",
    "snippet_stride",
    "tail_policy",
    "frame_size",
    "normalisation",
    "weights_sha256",
    "feature_dtype",
    "pooled",
)
_CHUNK_BYTES = 64 * 2**20


def _plain(value):
    """h5py attribute value → plain Python (numpy scalars and bytes become int/float/str)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def make_recipe(
    *,
    backbone: str,
    feature_dim: int,
    n_crops: int = 1,
    crop_order: list[str] | None = None,
    geometry: SnippetGeometry | None = None,
    frame_size: str = "",
    normalisation: str = "",
    weights_sha256: str = "random-init",
    feature_dtype: str = "float32",
    pooled: bool = False,
    extraction_config: str = "",
) -> dict:
    """Root attributes for a new store; ``extraction_config`` is the full producing config as YAML."""
    if feature_dtype not in ("float16", "float32"):
        raise VadmilError(f"feature_dtype must be float16 or float32, got '{feature_dtype}'")
    crop_order = list(crop_order) if crop_order else [f"crop{i}" for i in range(n_crops)]
    if len(crop_order) != n_crops:
        raise VadmilError(f"crop_order names {len(crop_order)} crops but n_crops is {n_crops}")
    return {
        "backbone": backbone,
        "feature_dim": int(feature_dim),
        "n_crops": int(n_crops),
        "crop_order": json.dumps(crop_order),
        **(geometry or SnippetGeometry()).to_attrs(),
        "frame_size": frame_size,
        "normalisation": normalisation,
        "weights_sha256": weights_sha256,
        "feature_dtype": feature_dtype,
        "pooled": bool(pooled),
        "extraction_config": extraction_config,
    }


def recipe_differences(a: Mapping, b: Mapping) -> list[str]:
    """'key: a != b' for every recipe key on which two recipes differ."""
    return [
        f"{k}: {_plain(a.get(k))!r} != {_plain(b.get(k))!r}"
        for k in RECIPE_KEYS
        if _plain(a.get(k)) != _plain(b.get(k))
    ]


class FeatureStore:
    """Read and append per-video snippet features.

    ``FeatureStore(path)`` opens an existing store read-only; ``FeatureStore.create(path, recipe)`` makes a new
    one (or reopens an existing one for appending after checking its recipe matches).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        self.path = Path(path)
        self.mode = mode
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._check()

    # ---- opening -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, recipe: Mapping) -> FeatureStore:
        """Create a store with ``recipe`` (see :func:`make_recipe`), or reopen an existing one with the same recipe."""
        path = Path(path)
        if path.exists():
            store = cls(path, mode="a")
            diffs = recipe_differences(store.attrs, recipe)
            if diffs:
                raise VadmilError(
                    f"feature store {path} was made with a different recipe ({'; '.join(diffs)}); "
                    "write to a new output path or use the store's recipe"
                )
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["vadmil_version"] = __version__
            for key, value in recipe.items():
                f.attrs[key] = value
            f.create_group(VIDEOS)
        return cls(path, mode="a")

    def _check(self) -> None:
        """Fail early, with a fix, on a missing, unreadable, foreign or newer-schema file."""
        if not self.path.exists():
            raise VadmilError(
                f"feature store {self.path} does not exist; create it with `vadmil extract` or `vadmil import`, "
                "or point dataset.store at an existing file"
            )
        try:
            f = self.file
        except OSError as err:
            raise VadmilError(
                f"feature store {self.path} is not a readable HDF5 file (truncated or not HDF5: {err}); "
                "re-create it with `vadmil extract` or `vadmil import`"
            ) from None
        version = f.attrs.get("schema_version")
        if version is None or VIDEOS not in f:
            raise VadmilError(
                f"{self.path} is an HDF5 file but not a vadmil feature store (no schema_version attribute or "
                "videos group); convert your features with `vadmil import`"
            )
        if int(version) != SCHEMA_VERSION:
            raise VadmilError(
                f"feature store {self.path} has schema version {int(version)} but this vadmil "
                f"({__version__}) reads version {SCHEMA_VERSION}; re-create the store or install a matching vadmil"
            )

    @property
    def file(self) -> h5py.File:
        """The open h5py handle, (re)opened lazily in each process: h5py handles do not survive fork."""
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, self.mode)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        # Pickled into DataLoader workers (spawn) without the handle; each worker opens its own.
        return {"path": self.path, "mode": self.mode}

    def __setstate__(self, state):
        self.path, self.mode = state["path"], state["mode"]
        self._file, self._pid = None, None

    # ---- recipe --------------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {k: _plain(v) for k, v in self.file.attrs.items()}

    @property
    def feature_dim(self) -> int:
        return int(self.file.attrs["feature_dim"])

    @property
    def n_crops(self) -> int:
        return int(self.file.attrs["n_crops"])

    @property
    def geometry(self) -> SnippetGeometry:
        return SnippetGeometry.from_attrs(self.file.attrs)

    @property
    def pooled(self) -> bool:
        return bool(self.file.attrs.get("pooled", False))

    def recipe(self) -> dict:
        attrs = self.attrs
        return {k: attrs.get(k) for k in RECIPE_KEYS}

    def check_feature_dim(self, expected: int | None) -> None:
        """Error naming both values when a config expects another feature dimension."""
        if expected is not None and int(expected) != self.feature_dim:
            raise VadmilError(
                f"feature store {self.path} holds {self.feature_dim}-d features but the config expects "
                f"{int(expected)}-d; set dataset.feature_dim={self.feature_dim} (or null) or use a store with "
                f"{int(expected)}-d features"
            )

    # ---- videos --------------------------------------------------------------------------------------------
    def ids(self, complete_only: bool = True) -> list[str]:
        """Video ids in the store, sorted; incomplete (interrupted) videos are left out unless asked for."""
        videos = self.file[VIDEOS]
        return sorted(v for v in videos if not complete_only or bool(videos[v].attrs.get("complete", False)))

    def __contains__(self, video_id: str) -> bool:
        g = self.file[VIDEOS].get(video_id)
        return g is not None and bool(g.attrs.get("complete", False))

    def __len__(self) -> int:
        return len(self.ids())

    def _group(self, video_id: str) -> h5py.Group:
        if video_id not in self:
            raise VadmilError(
                f"video '{video_id}' is not in feature store {self.path} (or its write never completed); "
                "check the id against `FeatureStore.ids()` or re-run the extraction"
            )
        return self.file[VIDEOS][video_id]

    def info(self, video_id: str) -> dict:
        """Per-video attributes: n_frames, fps, source, mean_norm, n_snippets."""
        g = self._group(video_id)
        info = {k: _plain(v) for k, v in g.attrs.items()}
        info["n_snippets"] = int(g["features"].shape[0])
        return info

    def n_snippets(self, video_id: str) -> int:
        return int(self._group(video_id)["features"].shape[0])

    def n_frames(self, video_id: str) -> int:
        return int(self._group(video_id).attrs["n_frames"])

    def read(self, video_id: str, check_finite: bool = True) -> np.ndarray:
        """Features of one video, float32 [T, C, D]. Non-finite values are an error naming the video."""
        x = self._group(video_id)["features"][()].astype(np.float32, copy=False)
        if check_finite and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=(1, 2)).sum())
            raise VadmilError(
                f"video '{video_id}' in feature store {self.path} has NaN/Inf features in {bad} of {len(x)} "
                "snippets; re-extract or re-import that video"
            )
        return x

    def append(
        self,
        video_id: str,
        features: np.ndarray,
        *,
        n_frames: int,
        fps: float,
        source: str = "",
        overwrite: bool = False,
    ) -> bool:
        """Write one video's features [T, C, D]; returns False (and writes nothing) when it is already complete.

        An incomplete group left by an interrupted write is replaced. ``complete`` is set and flushed last.
        """
        if self.mode == "r":
            raise VadmilError(
                f"feature store {self.path} is open read-only; open it with FeatureStore.create"
            )
        if not video_id or "/" in video_id:
            raise VadmilError(f"invalid video id {video_id!r}: ids must be non-empty and contain no '/'")
        features = np.asarray(features)
        expected = (self.n_crops, self.feature_dim)
        if features.ndim != 3 or features.shape[1:] != expected or features.shape[0] < 1:
            raise VadmilError(
                f"video '{video_id}': features have shape {features.shape} but store {self.path} needs "
                f"[T>=1, {expected[0]}, {expected[1]}] (n_crops, feature_dim)"
            )
        if not np.isfinite(features).all():
            raise VadmilError(f"video '{video_id}': features contain NaN/Inf; nothing was written for it")
        videos = self.file[VIDEOS]
        if video_id in videos:
            if bool(videos[video_id].attrs.get("complete", False)) and not overwrite:
                return False
            del videos[video_id]
        dtype = np.dtype(str(self.file.attrs["feature_dtype"]))
        row_bytes = features.shape[1] * features.shape[2] * dtype.itemsize
        chunk_rows = max(1, min(features.shape[0], _CHUNK_BYTES // row_bytes))
        g = videos.create_group(video_id)
        g.create_dataset("features", data=features.astype(dtype), chunks=(chunk_rows, *features.shape[1:]))
        g.attrs["n_frames"] = int(n_frames)
        g.attrs["fps"] = float(fps)
        g.attrs["source"] = str(source)
        # Mean L2 norm per snippet: tells apart feature lineages (e.g. I3D norms of ~22 vs ~2.5).
        g.attrs["mean_norm"] = float(np.linalg.norm(features.astype(np.float32), axis=-1).mean())
        self.file.flush()
        g.attrs["complete"] = True
        self.file.flush()
        return True

    def mean_norm(self) -> float:
        """Mean per-snippet L2 norm over complete videos (weighted by snippet count)."""
        total = count = 0.0
        for v in self.ids():
            g = self.file[VIDEOS][v]
            n = g["features"].shape[0]
            total += float(g.attrs.get("mean_norm", 0.0)) * n
            count += n
        return total / count if count else float("nan")

    def validate(self) -> list[str]:
        """Problems found in complete videos (shape, frame count, non-finite values); empty when all is well."""
        problems = []
        geometry = self.geometry
        for v in self.ids():
            g = self.file[VIDEOS][v]
            shape = g["features"].shape
            if shape[1:] != (self.n_crops, self.feature_dim):
                problems.append(
                    f"{v}: features shape {shape} does not match [T, {self.n_crops}, {self.feature_dim}]"
                )
                continue
            n_frames = int(g.attrs.get("n_frames", -1))
            if not self.pooled and n_frames >= 0 and geometry.n_snippets(n_frames) != shape[0]:
                problems.append(
                    f"{v}: {shape[0]} snippets but n_frames={n_frames} gives {geometry.n_snippets(n_frames)}"
                )
            if not np.isfinite(g["features"][()]).all():
                problems.append(f"{v}: NaN/Inf features")
        return problems

"""The embedded synthetic data set: a feature store with planted anomalies and its manifest.

Every video is a temporally correlated feature sequence: a per-video scene offset plus an AR(1) latent process
projected to D dimensions, plus per-crop noise. Abnormal videos get 1–2 *events*: for a stretch of 10–30 % of the
video, the features move along a fixed direction u (one per event type). Both normal and abnormal videos may also
carry *distractor* events along other directions, so "anything unusual" is not enough: a MIL head has to learn
which changes are anomalies. Frame counts have a partial last snippet, so the tail policy matters. Generation is
deterministic in its parameters (seed included) and needs no download.

Each abnormal video has one *anomaly type* (drawn from ``anomaly_types``; the manifest's ``category``), which says
how its events change a snippet's (noise-free) feature x, with s = ``anomaly_strength``:

- ``additive``: x + s·u — the norm grows (the only type before; magnitude-based heads assume this one);
- ``constant_norm``: ‖x‖ · unit(x + s·u) — a change of direction at exactly the snippet's norm;
- ``lower_norm``: r·‖x‖ · unit(r·x + s·u), r = ``lower_norm_scale`` — the event added to the shrunken snippet,
  at r times its norm: a direction change that LOWERS the magnitude.

All three carry about the same component s along u, so a head that reads directions finds each of them; a head that
ranks snippets by feature magnitude (RTFM, MGFN) is helped by the first and misled by the last. With the single
type ``[additive]`` the data are exactly those of earlier versions.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.store_compact import compact
from vadmil.errors import VadmilError, check_choice

log = logging.getLogger(__name__)
BACKBONE = "synthetic"
ANOMALY_TYPES = ("additive", "constant_norm", "lower_norm")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic data set (all recorded in the store's ``extraction_config``)."""

    seed: int = 0
    n_train_normal: int = 200
    n_train_abnormal: int = 200
    n_test_normal: int = 60
    n_test_abnormal: int = 60
    feature_dim: int = 128
    n_crops: int = 2
    min_snippets: int = 20
    max_snippets: int = 120
    latent_dim: int = 16
    rho: float = 0.9  # AR(1) coefficient of the latent process: temporal correlation between snippets
    crop_noise: float = 0.5
    anomaly_strength: float = 3.5
    n_event_types: int = 3
    distractor_rate: float = 0.5  # chance that a video carries one distractor event
    anomaly_types: list[str] = field(default_factory=lambda: list(ANOMALY_TYPES))  # one per abnormal video
    lower_norm_scale: float = 0.5  # r of the lower_norm type: its events have r times the snippet's norm
    snippet_len: int = 16
    fps: float = 30.0

    def __post_init__(self):
        object.__setattr__(self, "anomaly_types", [str(t) for t in self.anomaly_types])  # YAML/Hydra lists
        if not self.anomaly_types or len(set(self.anomaly_types)) != len(self.anomaly_types):
            raise VadmilError(
                f"synthetic anomaly_types must list distinct types, got {self.anomaly_types}; "
                f"choose from {', '.join(ANOMALY_TYPES)}"
            )
        for kind in self.anomaly_types:
            check_choice("synthetic anomaly type", kind, ANOMALY_TYPES)
        if not 0 < self.lower_norm_scale < 1:
            raise VadmilError(f"synthetic lower_norm_scale must lie in (0, 1), got {self.lower_norm_scale}")
        if self.feature_dim < 2 * self.n_event_types:
            raise VadmilError(
                f"synthetic feature_dim={self.feature_dim} is too small for {self.n_event_types} event types "
                f"(needs at least {2 * self.n_event_types}: event and distractor directions)"
            )
        if min(self.n_train_normal, self.n_train_abnormal, self.n_test_normal, self.n_test_abnormal) < 0:
            raise VadmilError("synthetic video counts cannot be negative")
        if not 1 <= self.min_snippets <= self.max_snippets:
            raise VadmilError(
                f"need 1 <= min_snippets <= max_snippets, got {self.min_snippets}, {self.max_snippets}"
            )


def _events(rng: np.random.Generator, n: int, count: int) -> list[tuple[int, int]]:
    """``count`` event snippet ranges [start, end) covering 10–30 % of an n-snippet video each."""
    out = []
    for _ in range(count):
        length = int(rng.integers(max(2, n // 10), max(3, 3 * n // 10) + 1))
        length = min(length, n)
        start = int(rng.integers(0, n - length + 1))
        out.append((start, start + length))
    return out


def _plant(x: np.ndarray, u: np.ndarray, kind: str, spec: SyntheticSpec) -> np.ndarray:
    """An event of type ``kind`` (module docstring) on snippets x [L, D] along the unit direction u [D]."""
    s = spec.anomaly_strength
    if kind == "additive":
        return x + s * u
    r = 1.0 if kind == "constant_norm" else spec.lower_norm_scale
    moved = r * x + s * u
    return moved * (
        r * np.linalg.norm(x, axis=1, keepdims=True) / np.linalg.norm(moved, axis=1, keepdims=True)
    )


def _video(spec: SyntheticSpec, rng: np.random.Generator, dirs: np.ndarray, proj: np.ndarray, abnormal: bool):
    """One video: (features [T, C, D] float32, n_frames, anomalous snippet ranges, anomaly type or "normal")."""
    n = int(rng.integers(spec.min_snippets, spec.max_snippets + 1))
    z = np.empty((n, spec.latent_dim))
    z[0] = rng.normal(size=spec.latent_dim)
    innovation = np.sqrt(1 - spec.rho**2)
    for t in range(1, n):
        z[t] = spec.rho * z[t - 1] + innovation * rng.normal(size=spec.latent_dim)
    base = 0.5 * rng.normal(size=spec.feature_dim) + z @ proj
    events = _events(rng, n, int(rng.integers(1, 3))) if abnormal else []
    kind = "normal"
    if abnormal:  # a single type draws nothing, so [additive] reproduces the earlier data exactly
        types = spec.anomaly_types
        kind = types[int(rng.integers(len(types)))] if len(types) > 1 else types[0]
    for start, end in events:
        base[start:end] = _plant(base[start:end], dirs[rng.integers(spec.n_event_types)], kind, spec)
    if rng.random() < spec.distractor_rate:
        (start, end), which = (
            _events(rng, n, 1)[0],
            spec.n_event_types + rng.integers(len(dirs) - spec.n_event_types),
        )
        base[start:end] += spec.anomaly_strength * dirs[which]
    x = base[:, None, :] + spec.crop_noise * rng.normal(size=(n, spec.n_crops, spec.feature_dim))
    n_frames = n * spec.snippet_len - int(rng.integers(0, spec.snippet_len))  # partial last snippet
    return x.astype(np.float32), n_frames, events, kind


def generate(store: str | os.PathLike, manifest: str | os.PathLike, spec: SyntheticSpec) -> None:
    """Write the store and its manifest (JSON, intervals in frames, end inclusive, each video's anomaly type as its
    ``category``); both atomically."""
    store, manifest = Path(store), Path(manifest)
    rng = np.random.default_rng(spec.seed)
    n_dirs = spec.n_event_types * 2  # event directions, then distractor directions
    dirs = np.linalg.qr(rng.normal(size=(spec.feature_dim, n_dirs)))[0].T
    proj = rng.normal(size=(spec.latent_dim, spec.feature_dim)) / np.sqrt(spec.latent_dim)
    geometry = SnippetGeometry(spec.snippet_len, spec.snippet_len, "pad_last")
    recipe = make_recipe(
        backbone=BACKBONE, feature_dim=spec.feature_dim, n_crops=spec.n_crops, geometry=geometry,
        normalisation="none", weights_sha256="synthetic", extraction_config=yaml.safe_dump(asdict(spec)),
    )  # fmt: skip
    tmp_store = store.with_name(f".{store.name}.{os.getpid()}.tmp")
    tmp_store.unlink(missing_ok=True)
    rows = []
    splits = [("train", 0, spec.n_train_normal), ("train", 1, spec.n_train_abnormal)]
    splits += [("test", 0, spec.n_test_normal), ("test", 1, spec.n_test_abnormal)]
    with FeatureStore.create(tmp_store, recipe) as out:
        for split, label, count in splits:
            for i in range(count):
                video_id = f"{split}_{'abnormal' if label else 'normal'}_{i:03d}"
                x, n_frames, events, kind = _video(spec, rng, dirs, proj, bool(label))
                out.append(video_id, x, n_frames=n_frames, fps=spec.fps, source=f"synthetic:{spec.seed}")
                intervals = [
                    [s * spec.snippet_len, min(e * spec.snippet_len, n_frames) - 1] for s, e in sorted(events)
                ]
                rows.append(
                    {
                        "video_id": video_id,
                        "split": split,
                        "label": label,
                        "intervals": intervals,
                        "category": kind,
                    }
                )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp_manifest = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    tmp_manifest.write_text(json.dumps({"videos": rows}, indent=1))
    compact(
        tmp_store
    )  # one self-contained file (no segment folder beside it), so it can be copied and shared
    os.replace(tmp_store, store)
    os.replace(tmp_manifest, manifest)
    Path(f"{tmp_store}.lock").unlink(missing_ok=True)  # the private temp store's writer lock


def ensure_synthetic(store: str, manifest: str, **params) -> tuple[str, str]:
    """Generate the synthetic store and manifest unless both exist with these parameters.

    A file at ``store`` that is not a synthetic store is never overwritten.
    """
    unknown = sorted(set(params) - set(SyntheticSpec.__dataclass_fields__))
    if unknown:
        raise VadmilError(
            f"unknown synthetic data parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(SyntheticSpec.__dataclass_fields__)}"
        )
    spec = SyntheticSpec(**params)
    Path(store).parent.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs all prepare the same data: one generates it, the others wait here and then reuse it.
    with open(f"{store}.prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _up_to_date(store, manifest, spec):
            log.info("generating the synthetic data set into %s", store)
            generate(store, manifest, spec)
    return store, manifest


def _up_to_date(store: str, manifest: str, spec: SyntheticSpec) -> bool:
    """Whether ``store`` and ``manifest`` hold the data set of ``spec``; an error if ``store`` is not synthetic."""
    if not Path(store).exists():
        return False
    with FeatureStore(store) as existing:
        attrs = existing.attrs
    if attrs.get("backbone") != BACKBONE:
        raise VadmilError(
            f"{store} exists and is not a synthetic store; choose another dataset.store for dataset=synthetic"
        )
    return yaml.safe_load(attrs.get("extraction_config", "")) == asdict(spec) and Path(manifest).exists()

"""Import (`vadmil import`): convert public feature files (RTFM, Wu, Sultani, plain .npy) into a feature store.

One video at a time (memory bounded by the largest video), resumable (videos already in the store are skipped;
an interrupted import keeps every finished video), with a progress bar. A video whose files are bad is reported
and skipped; the command then exits non-zero, and nothing about that video is in the store.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vadmil.data.feature_files import FeatureReader
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import normalise_video_id
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.store_writer import NoSpaceError
from vadmil.errors import VadmilError

log = logging.getLogger("vadmil.import")


def load_frame_counts(path: str) -> dict[str, tuple[int, float | None]]:
    """CSV ``video_id,n_frames[,fps]`` (header optional) → id → (n_frames, fps or None)."""
    counts = {}
    try:
        rows = list(csv.reader(Path(path).read_text().splitlines()))
    except OSError as err:
        raise VadmilError(
            f"frame-count file {path} cannot be read ({err.strerror}); fix frame_counts=..."
        ) from None
    for line, row in enumerate(rows, 1):
        if not row or (line == 1 and not row[1].strip().isdigit()):
            continue  # blank line or header
        try:
            counts[normalise_video_id(row[0].strip())] = (
                int(row[1]),
                float(row[2]) if len(row) > 2 else None,
            )
        except (IndexError, ValueError):
            raise VadmilError(
                f"{path}:{line}: expected 'video_id,n_frames[,fps]', got {','.join(row)!r}"
            ) from None
    return counts


def frame_count(
    video_id: str, t: int, geometry: SnippetGeometry, pooled: bool, counts: dict | None, fps: float
):
    """(n_frames, fps) of an imported video: from the frame-count file, else the frames its T snippets span."""
    if counts is not None:
        if video_id not in counts:
            raise VadmilError(f"video '{video_id}' is missing from the frame-count file; add a row for it")
        n, video_fps = counts[video_id]
        return n, video_fps or fps
    if pooled:
        raise VadmilError(
            "pooled features (32 segments per video) do not tell how many frames a video has; give the true "
            "counts with frame_counts=<csv of video_id,n_frames>"
        )
    return (t - 1) * geometry.stride + geometry.length, fps


def run_import(cfg: DictConfig) -> dict:
    """Import every video of ``cfg.input`` into ``cfg.output``; returns counts and failures."""
    reader: FeatureReader = instantiate(cfg.format.reader, input=to_absolute_path(cfg.input))
    videos = reader.plan()
    geometry = SnippetGeometry(cfg.recipe.snippet_len, cfg.recipe.snippet_stride, cfg.recipe.tail_policy)
    counts = load_frame_counts(to_absolute_path(cfg.frame_counts)) if cfg.frame_counts else None
    recipe = make_recipe(
        backbone=cfg.recipe.backbone, feature_dim=reader.feature_dim, n_crops=reader.n_crops, crop_order=reader.crop_order,
        geometry=geometry, frame_size=cfg.recipe.frame_size, normalisation=cfg.recipe.normalisation,
        weights_sha256=cfg.recipe.weights_sha256, feature_dtype=cfg.recipe.feature_dtype, pooled=reader.pooled,
        extra_streams=OmegaConf.to_container(cfg.format.extra_streams), extraction_config=OmegaConf.to_yaml(cfg),
    )  # fmt: skip
    output = Path(to_absolute_path(cfg.output))
    done, failures = 0, []
    with FeatureStore.create(output, recipe) as store:
        todo = [v for v in videos if v.video_id not in store]
        for video in tqdm(todo, desc="import", unit="video", disable=not cfg.progress):
            try:
                item = reader.load(video)
                n_frames, fps = frame_count(
                    item.video_id, len(item.features), geometry, reader.pooled, counts, cfg.fps
                )
                store.append(item.video_id, item.features, n_frames=n_frames, fps=fps, source=item.source,
                             extra=item.extra)  # fmt: skip
                done += 1
            except NoSpaceError:  # every later video would fail the same way
                raise
            except VadmilError as err:
                failures.append((video.video_id, str(err)))
                tqdm.write(f"vadmil: failed: {video.video_id}: {err}", file=sys.stderr)
        total, mean_norm = len(store), store.mean_norm()
    return {"imported": done, "skipped": len(videos) - len(todo), "failed": failures, "total": total,
            "mean_norm": mean_norm, "output": str(output)}  # fmt: skip

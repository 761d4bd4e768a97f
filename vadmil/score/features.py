"""Features of a new video, extracted exactly as the training store's videos were.

The training store records the full `vadmil extract` config (``extraction_config``). Scoring rebuilds the
extractor from it, applies only the overrides the user gives (a moved weights file, the device, batch sizes, or
deliberately a recipe field), and compares the resulting recipe with the recorded one: any difference in a recipe
field (backbone, weights sha256, crops, snippet geometry, frame size, decoder, normalisation) is an error that
names the field — features made another way would be scored by a head that never saw their like.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from vadmil.data.recipe import recipe_differences
from vadmil.errors import VadmilError
from vadmil.extract.builder import Extractor, build_extractor
from vadmil.extract.pipeline import BackboneRunner, SnippetBatch, check_length
from vadmil.trust import trusted_config


@dataclass
class VideoMeta:
    """A decoded video's frame count and rate (of the stream the snippets were cut from), and its snippets."""

    path: Path
    n_frames: int
    fps: float
    n_snippets: int
    times: np.ndarray | None = None  # [n_frames] seconds from the first frame, from the stream's timestamps
    duration_s: float = 0.0
    time_source: str = "timestamps"
    problems: tuple[str, ...] = ()  # integrity problems let through by integrity=warn


def recorded_extraction(recipe: dict, store: str) -> DictConfig:
    """The `vadmil extract` config recorded in a training recipe; an error for stores not extracted from videos."""
    text = recipe.get("extraction_config") or ""
    # Data from the store or checkpoint: resolved and checked before its backbone is built.
    cfg = (
        trusted_config(text, f"the extraction config of store {store}")
        if text.strip()
        else OmegaConf.create({})
    )
    if not isinstance(cfg, DictConfig) or "decoder" not in cfg or "_target_" not in cfg.get("backbone", {}):
        raise VadmilError(
            f"the training store {store} (backbone '{recipe.get('backbone')}') was not made by `vadmil extract` "
            "from videos (imported or synthetic features), so new videos cannot be turned into matching features; "
            "score with a model trained on a store you extracted"
        )
    return cfg


def scoring_extractor(recipe: dict, store: str, overrides: dict) -> Extractor:
    """The extractor for new videos: the recorded config plus ``overrides`` (e.g. ``{"backbone": {"weights":
    "/new/place/w.pyth"}, "device": "cuda"}``), checked against the recorded recipe."""
    cfg = recorded_extraction(recipe, store)
    cfg = OmegaConf.merge(cfg, OmegaConf.create(overrides or {}))
    weights = cfg.backbone.get("weights")
    if weights and not Path(str(weights)).expanduser().is_file():
        raise VadmilError(
            f"the backbone weights {weights} recorded for the training store are not here; pass "
            f"extract.backbone.weights=<file> (its sha256 must be {recipe.get('weights_sha256')})"
        )
    audio_weights = (
        ((cfg.get("audio") or {}).get("net") or {}).get("weights")
        if "audio" in (cfg.get("streams") or [])
        else None
    )
    if audio_weights and not Path(str(audio_weights)).expanduser().is_file():
        raise VadmilError(
            f"the VGGish weights {audio_weights} recorded for the training store's audio stream are not here; pass "
            "extract.audio.net.weights=<file> (its sha256 is in the store's audio_recipe)"
        )
    extractor = build_extractor(cfg)
    diffs = recipe_differences(recipe, extractor.recipe)
    if diffs:
        raise VadmilError(
            "the scoring recipe differs from the training store's, so the head would see other features: "
            + "; ".join(f"{d} (trained != now)" for d in diffs)
            + "; drop the override(s) or retrain on features made this way"
        )
    return extractor


def as_stored(features: np.ndarray, recipe: dict) -> np.ndarray:
    """Features rounded to the store's dtype (a float16 store's model never saw float32 precision)."""
    return features.astype(recipe.get("feature_dtype") or "float32").astype(np.float32)


def probe(path: Path, extractor: Extractor) -> VideoMeta:
    """Frame count, rate and snippet count of ``path`` as the extractor will decode it; errors for unreadable
    videos and videos shorter than one snippet."""
    video = extractor.stream([path], 1).open(path)  # the decoder and integrity checks of the extraction
    info, times, problems = video.info, video.times, tuple(video.problems)
    video.close()
    g = extractor.geometry
    check_length(path, info.n_frames, g, extractor.checks.allow_short)  # as the training store's extraction
    return VideoMeta(path, info.n_frames, info.fps, g.n_snippets(info.n_frames), times, info.duration_s,
                     info.time_source, problems)  # fmt: skip


def _identity(item):
    return item  # module-level so it pickles into a spawned worker


def _batches(
    extractor: Extractor, meta: VideoMeta, batch_snippets: int, workers: int
) -> Iterator[SnippetBatch]:
    stream = extractor.stream([meta.path], batch_snippets)
    if workers == 0:
        yield from stream
        return
    # One decoding worker overlaps decoding with the backbone (one video: more workers would idle).
    yield from DataLoader(stream, batch_size=None, num_workers=1, collate_fn=_identity)


def snippet_features(extractor: Extractor, runner: BackboneRunner, meta: VideoMeta, recipe: dict,
                     batch_snippets: int = 8, workers: int = 1, progress: bool = True) -> Iterator[np.ndarray]:  # fmt: skip
    """Yield the video's features snippet by snippet, float32 [C, D] each, in order, as the backbone produces
    them (``batch_snippets`` at a time; 1 for the lowest latency). A progress bar counts snippets."""
    bar = tqdm(total=meta.n_snippets, desc=meta.path.name, unit="snippet", disable=not progress, leave=False)
    made = 0
    try:
        for item in _batches(extractor, meta, batch_snippets, workers):
            if item.error is not None:
                raise VadmilError(item.error)
            if item.clips is not None:
                for feats in as_stored(runner(item.clips), recipe):
                    made += 1
                    bar.update(1)
                    yield feats
    finally:
        bar.close()
    if made != meta.n_snippets:
        raise VadmilError(
            f"{meta.path}: decoded {made} snippets, expected {meta.n_snippets} (truncated or corrupt file?)"
        )

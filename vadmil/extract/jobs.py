"""Extraction jobs behind `vadmil extract` and `vadmil extract-merge`: raw videos → feature store (one shard);
shard stores → one store."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig
from tqdm import tqdm

from vadmil.data.labels import normalise_video_id
from vadmil.data.recipe import recipe_differences
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.extract.builder import build_extractor
from vadmil.extract.pipeline import (
    BackboneRunner,
    list_videos,
    record_failures,
    run_extraction,
    shard_of,
)  # fmt: skip
from vadmil.extract.threads import set_threads

log = logging.getLogger("vadmil.extract")


def extract(cfg: DictConfig) -> dict:
    """Run one extraction (one shard) described by ``cfg``; returns counts and failures."""
    videos = shard_of(list_videos(to_absolute_path(cfg.input)), cfg.shard, cfg.num_shards)
    output = Path(to_absolute_path(cfg.output))
    extractor = build_extractor(cfg)
    with FeatureStore.create(output, extractor.recipe) as store:
        todo = [v for v in videos if normalise_video_id(v.name) not in store]
        log.info("%d videos (shard %d/%d): %d to extract, %d already in %s", len(videos), cfg.shard,
                 cfg.num_shards, len(todo), len(videos) - len(todo), output)  # fmt: skip
        stream = extractor.stream(todo, cfg.batch_snippets)
        threads = set_threads(cfg.get("threads", "auto"), cfg.num_workers)
        log.info("backbone on %d torch thread(s) beside %d decoding worker(s)", threads, cfg.num_workers)
        runner = BackboneRunner(extractor.backbone, cfg.device, cfg.precision)
        if extractor.audio is not None:
            extractor.audio.net.to(runner.device)
        result = run_extraction(store, stream, runner, cfg.num_workers, cfg.progress, extractor.audio)
        record_failures(output, result["failed"], store)
        result.update(skipped=len(videos) - len(todo), total=len(store), output=str(output))
    return result


def _kept(info: dict) -> dict:
    """A merged video keeps the attributes its shard recorded (times, integrity), not the derived ones."""
    return {
        k: v for k, v in info.items() if k not in ("n_frames", "fps", "source", "mean_norm", "n_snippets")
    }


def merge(inputs: list[str], output: str, progress: bool = False) -> int:
    """Join shard stores with identical recipes into ``output``; returns the number of videos added."""
    if not inputs:
        raise VadmilError("extract-merge needs inputs=[shard0.h5,shard1.h5,...]")
    stores = [FeatureStore(to_absolute_path(p)) for p in inputs]
    for other in stores[1:]:
        diffs = recipe_differences(stores[0].attrs, other.attrs)
        if diffs:
            raise VadmilError(
                f"{other.path} was extracted with another recipe than {stores[0].path}: {'; '.join(diffs)}"
            )
    recipe = {k: v for k, v in stores[0].attrs.items() if k not in ("schema_version", "vadmil_version")}
    added = 0
    with FeatureStore.create(to_absolute_path(output), recipe) as out:
        for store in stores:
            for video_id in tqdm(
                store.ids(), desc=f"merge {store.path.name}", unit="video", disable=not progress
            ):
                info = store.info(video_id)
                extra = store.read_extras(video_id)
                added += out.append(video_id, store.read(video_id), n_frames=info["n_frames"], fps=info["fps"],
                                    source=info.get("source", ""), extra=extra, attrs=_kept(info))  # fmt: skip
            store.close()
    return added

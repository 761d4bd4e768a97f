"""`vadmil synthesize`: write the embedded synthetic feature store and its manifest."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from vadmil.commands.base import config_dir, guarded
from vadmil.data.store import FeatureStore


@hydra.main(config_path=config_dir(), config_name="synthesize", version_base="1.3")
@guarded(record=False)
def main(cfg: DictConfig) -> None:
    prepare = cfg.dataset.prepare
    store, manifest = instantiate(
        prepare, store=to_absolute_path(prepare.store), manifest=to_absolute_path(prepare.manifest)
    )
    with FeatureStore(store) as s:
        print(
            f"store: {store} ({len(s)} videos, {s.feature_dim}-d x {s.n_crops} crops)\nmanifest: {manifest}"
        )

"""A trained run, loaded for scoring new videos: the module, its config and the recipe of its training store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from vadmil.data.bags import eval_features
from vadmil.data.store import FeatureStore
from vadmil.data.streams import run_streams, stream_dims
from vadmil.errors import VadmilError
from vadmil.rundir import load_finished_run
from vadmil.training.module import MILModule


@dataclass
class ScoringModel:
    """A checkpoint ready to score features: ``module`` (eval mode, CPU), the run's resolved ``config``, the
    ``recipe`` of the store it was trained on, and where it came from."""

    module: MILModule
    config: DictConfig
    recipe: dict
    checkpoint: Path

    @property
    def head(self) -> str:
        return str(self.config.model.name)

    @property
    def threshold(self) -> float:
        return float(self.config.get("eval", {}).get("threshold", 0.5))

    @torch.inference_mode()
    def snippet_scores(self, features: np.ndarray) -> np.ndarray:
        """Crop-averaged scores float32 [T] of one video's features [T, C, D] (the run's ``data.normalise`` and,
        through the module, its standardisation applied)."""
        x = eval_features(np.asarray(features, np.float32), self.config.data.normalise)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))[None]  # [1, C, T, D]
        mask = torch.ones(1, x.shape[2], dtype=torch.bool)
        return self.module(x, mask).video_scores[0].float().numpy()


def load_scoring_model(path: str | Path) -> ScoringModel:
    """Load ``path`` (a run dir or a checkpoint written by `vadmil train`) for scoring.

    The checkpoint carries the resolved config and the store recipe (``checkpoint["vadmil"]``); for older
    checkpoints the run's ``config.yaml`` and the store named in it are used. A checkpoint without either is an
    error: the head cannot be rebuilt, nor the features reproduced, without them."""
    run = load_finished_run(path)
    cfg = run.config
    features = run.info.get("features")
    recipe = dict(features) if isinstance(features, dict) else {}
    if not recipe.get("extraction_config"):
        store_path = Path(str(cfg.dataset.store))
        if not store_path.is_file():
            raise VadmilError(
                f"checkpoint {run.checkpoint_path} records no feature recipe and its training store {store_path} "
                "is gone; score needs the recipe the features were extracted with"
            )
        with FeatureStore(store_path) as store:
            recipe = {**store.recipe(), "extraction_config": store.attrs.get("extraction_config", "")}
    try:
        feature_dim = int(recipe["feature_dim"])
    except (KeyError, TypeError, ValueError):
        raise VadmilError(
            f"checkpoint {run.checkpoint_path} records no usable feature_dim in its store recipe "
            f"({recipe.get('feature_dim')!r}); use a checkpoint written by `vadmil train`"
        ) from None
    dims = stream_dims(
        {**recipe, "feature_dim": feature_dim},
        run_streams(cfg)[0],
        f"the training store of {run.checkpoint_path}",
    )
    return ScoringModel(run.module(dims), cfg, recipe, run.checkpoint_path)

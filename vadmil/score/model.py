"""A trained run, loaded for scoring new videos: the module, its config and the recipe of its training store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vadmil.data.bags import eval_features
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.training.module import MILModule
from vadmil.training.train import build_module


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


def _checkpoint_paths(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint file, the run's config.yaml if there is one) of a run dir or a checkpoint file."""
    if path.is_dir():
        ckpt = path / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            raise VadmilError(
                f"{path} is not a finished vadmil run: checkpoints/best.ckpt is missing; give a run dir of "
                "`vadmil train` or a .ckpt file"
            )
        return ckpt, path / "config.yaml"
    if not path.is_file():
        raise VadmilError(
            f"checkpoint {path} does not exist; give a run dir of `vadmil train` or its .ckpt file"
        )
    run_config = path.parent.parent / "config.yaml"  # <run>/checkpoints/<name>.ckpt
    return path, run_config


def load_scoring_model(path: str | Path) -> ScoringModel:
    """Load ``path`` (a run dir or a checkpoint written by `vadmil train`) for scoring.

    The checkpoint carries the resolved config and the store recipe (``checkpoint["vadmil"]``); for older
    checkpoints the run's ``config.yaml`` and the store named in it are used. A checkpoint without either is an
    error: the head cannot be rebuilt, nor the features reproduced, without them."""
    ckpt_path, config_path = _checkpoint_paths(Path(path).expanduser())
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise VadmilError(f"cannot read checkpoint {ckpt_path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise VadmilError(f"{ckpt_path} is not a PyTorch Lightning checkpoint (no state_dict)")
    info = ckpt.get("vadmil") or {}
    if info.get("config"):
        cfg = OmegaConf.create(info["config"])
    elif config_path is not None and config_path.is_file():
        cfg = OmegaConf.load(config_path)
    else:
        raise VadmilError(
            f"checkpoint {ckpt_path} has no config (not written by `vadmil train`?) and no config.yaml beside its "
            "run dir; score with the run dir that holds both"
        )
    recipe = (info.get("features") or {}).copy()
    if not recipe.get("extraction_config"):
        store_path = Path(str(cfg.dataset.store))
        if not store_path.is_file():
            raise VadmilError(
                f"checkpoint {ckpt_path} records no feature recipe and its training store {store_path} is gone; "
                "score needs the recipe the features were extracted with"
            )
        with FeatureStore(store_path) as store:
            recipe = {**store.recipe(), "extraction_config": store.attrs.get("extraction_config", "")}
    module = build_module(cfg, int(recipe["feature_dim"]))
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise VadmilError(
            f"checkpoint {ckpt_path} does not fit the {cfg.model.name} head its config describes: "
            f"{str(err).splitlines()[0]}"
        ) from None
    return ScoringModel(module.eval(), cfg, recipe, ckpt_path)

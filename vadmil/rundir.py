"""The run dir of `vadmil train`: the one module that knows its layout, and loads a finished run.

Layout::

    <run>/
        config.yaml             the resolved config, file paths made absolute
        checkpoints/best.ckpt   the validation-selected checkpoint (Lightning); ``["vadmil"]`` holds the resolved
                                config and the store recipe, so a checkpoint alone can be scored
        predictions.npz         per test video: snippet scores, frame scores and frame labels
        metrics.json            written last: its presence marks a complete run
        error.txt               a failed run's one-line reason (a failed run never looks complete)
        logs/                   the CSV logger's metrics (the default logger; conf/logger/ says where others write)
        eval.json               written by `vadmil eval`
        scores/                 `vadmil score`'s output, unless told otherwise
        .hydra/                 Hydra's config.yaml (unresolved), hydra.yaml (choices), overrides.yaml

Naming paths and reading/writing the plain files needs no torch (the report imports this module); the functions
that load a checkpoint or rebuild a module import torch and the Lightning module when called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from vadmil.errors import VadmilError
from vadmil.trust import trusted_config

if TYPE_CHECKING:
    from vadmil.training.module import MILModule

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
BEST = "best"  # the selected checkpoint's file stem: checkpoints/best.ckpt
METRICS = "metrics.json"
PREDICTIONS = "predictions.npz"
ERROR = "error.txt"
LOGS = "logs"
EVAL = "eval.json"
SCORES = "scores"  # `vadmil score`'s default output folder
HYDRA = ".hydra"
FRAME_AUC_BY_CATEGORY = "frame_auc_by_category"  # metrics.json, under "test": category → frame AUC
RUN_HELP = "give a run dir of `vadmil train` or its .ckpt file"


@dataclass(frozen=True)
class RunDir:
    """The files of one run dir (paths only; nothing is read)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run dir a checkpoint file lies in (``<run>/checkpoints/<name>.ckpt``)."""
        return cls(Path(checkpoint).parent.parent)

    config = property(lambda self: self.path / CONFIG)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    checkpoint = property(lambda self: self.path / CHECKPOINTS / f"{BEST}.ckpt")
    predictions = property(lambda self: self.path / PREDICTIONS)
    metrics = property(lambda self: self.path / METRICS)
    error = property(lambda self: self.path / ERROR)
    logs = property(lambda self: self.path / LOGS)  # the default (CSV) logger's folder, conf/logger/csv.yaml
    eval = property(lambda self: self.path / EVAL)
    scores = property(lambda self: self.path / SCORES)
    hydra_config = property(lambda self: self.path / HYDRA / "config.yaml")
    hydra_meta = property(lambda self: self.path / HYDRA / "hydra.yaml")
    hydra_overrides = property(lambda self: self.path / HYDRA / "overrides.yaml")

    def is_run(self) -> bool:
        """True once a run has started here (Hydra's config), failed (error.txt) or completed (metrics.json)."""
        return any(p.is_file() for p in (self.metrics, self.error, self.hydra_config))

    def require_finished(self) -> None:
        """Error unless both the resolved config and the selected checkpoint are here."""
        for path, what in (
            (self.config, "its resolved config"),
            (self.checkpoint, "its selected checkpoint"),
        ):
            if not path.is_file():
                raise VadmilError(
                    f"{self.path} is not a finished vadmil run: {path.relative_to(self.path)} ({what}) is missing"
                )

    def record_error(self, message: str) -> None:
        """Mark the run as failed with its one-line reason."""
        if self.path.is_dir():
            self.error.write_text(message + "\n")


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: readers see the old file or the complete new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def save_predictions(path: Path, scores: Mapping[str, np.ndarray], frames: Mapping) -> None:
    """``predictions.npz`` (compressed), per test video id: ``snippet_scores/<id>`` float32 [T] (crop-averaged),
    ``frame_scores/<id>`` float32 [F] and ``frame_labels/<id>`` uint8 [F] — exactly the frames the test metrics
    were computed on (``frames``: see :func:`~vadmil.evaluation.predict.frame_arrays`), so `vadmil report` draws
    curves without the store or the annotations."""
    arrays = {f"snippet_scores/{k}": v for k, v in scores.items()}
    for video_id, (frame_score, frame_label) in frames.items():
        arrays[f"frame_scores/{video_id}"], arrays[f"frame_labels/{video_id}"] = frame_score, frame_label
    np.savez_compressed(path, **arrays)


def read_frame_predictions(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(frame scores, frame labels) id → [F] of a ``predictions.npz``; empty for files that predate them.
    Raises OSError/ValueError/KeyError for a missing or damaged file."""
    with np.load(path, allow_pickle=False) as data:
        scores = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("frame_scores/")}
        labels = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("frame_labels/")}
    return scores, labels


# ---- loading a finished run (imports torch when called) ----------------------------------------------------------
def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `vadmil train`, read as data (``weights_only``: tensors and plain containers, never
    arbitrary objects). The one place vadmil reads a checkpoint file."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file, or one holding objects that are not plain data
        raise VadmilError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise VadmilError(f"{path} is not a PyTorch Lightning checkpoint (no state_dict)")
    return ckpt


def checkpoint_files(path: Path) -> tuple[Path, Path]:
    """(checkpoint file, where the run's config.yaml would be) of a run dir or a checkpoint file."""
    if path.is_dir():
        run = RunDir(path)
        if not run.checkpoint.is_file():
            raise VadmilError(
                f"{path} is not a finished vadmil run: {CHECKPOINTS}/{BEST}.ckpt is missing; {RUN_HELP}"
            )
        return run.checkpoint, run.config
    if not path.is_file():
        raise VadmilError(f"checkpoint {path} does not exist; {RUN_HELP}")
    return path, RunDir.of_checkpoint(path).config


def restore_module(cfg: DictConfig, in_dim: int, state_dict: Mapping, source: Path) -> MILModule:
    """The module ``cfg`` describes (head sized ``in_dim``) with the weights of ``state_dict``, in eval mode."""
    from vadmil.training.module import MILModule

    module = MILModule.from_config(cfg, in_dim)
    try:
        module.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as err:  # other shapes or keys, or not tensors at all
        raise VadmilError(
            f"checkpoint {source} does not fit the {cfg.model.name} head its config describes: "
            f"{str(err).splitlines()[0]}"
        ) from None
    return module.eval()


@dataclass
class FinishedRun:
    """A trained run read back: its resolved ``config``, the ``checkpoint`` dict and where it came from."""

    config: DictConfig
    checkpoint: dict
    checkpoint_path: Path

    @property
    def info(self) -> dict:
        """What training saved beside the weights: ``config``, ``features`` (the store recipe), ``vadmil_version``."""
        info = self.checkpoint.get("vadmil")
        return info if isinstance(info, dict) else {}

    def module(self, in_dim: int) -> MILModule:
        return restore_module(self.config, in_dim, self.checkpoint["state_dict"], self.checkpoint_path)


def load_run_config(path: Path) -> DictConfig:
    """A run's ``config.yaml``, resolved and checked by :func:`~vadmil.trust.trusted_config` (it is data: only
    allow-listed ``_target_`` s may be built from it)."""
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # unreadable, or not YAML
        raise VadmilError(f"cannot read {path}: {type(err).__name__}: {' '.join(str(err).split())}") from None
    return trusted_config(cfg, str(path))


def load_finished_run(path: str | Path) -> FinishedRun:
    """Read a run dir or a checkpoint of `vadmil train`. The config is the one saved in the checkpoint, else the
    run's ``config.yaml``; neither is an error (the head could not be rebuilt). Either is checked by
    :func:`~vadmil.trust.trusted_config` before anything is built from it."""
    ckpt_path, config_path = checkpoint_files(Path(path).expanduser())
    ckpt = load_checkpoint(ckpt_path)
    info = ckpt.get("vadmil")
    saved = info.get("config") if isinstance(info, dict) else None
    if saved:
        cfg = trusted_config(saved, f"checkpoint {ckpt_path}")
    elif config_path.is_file():
        cfg = load_run_config(config_path)
    else:
        raise VadmilError(
            f"checkpoint {ckpt_path} has no config (not written by `vadmil train`?) and no {CONFIG} beside its "
            "run dir; use the run dir that holds both"
        )
    return FinishedRun(cfg, ckpt, ckpt_path)

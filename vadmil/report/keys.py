"""What makes two runs comparable: the features they were trained on, their objective, and their other settings.

- **features**: the store's feature identity (:func:`vadmil.data.identity.feature_identity`: the recipe — backbone,
  dim, crops, crop order, snippet geometry, tail policy, frame size, normalisation, weights hash, dtype, pooling,
  extra streams — and the producing config's settings that change the numbers) plus its mean feature norm to 4
  significant digits, which tells apart stores of one recipe but different content (the two circulating I3D
  lineages, ≈ 22 vs ≈ 2.5; synthetic stores of different seeds). Never paths or speed settings: a store moved,
  or re-extracted into another folder with other workers, batch sizes or device, is the same feature set.
- **objective**: the resolved ``model.objective`` config, named after its config choice (``sultani``).
- **variant**: every other setting that changes the trained model or its evaluation — ``model``, ``data``,
  ``trainer`` and ``eval`` minus the seed and settings that do not (progress bar, logging, workers, device) — so
  runs of different hyper-parameters (e.g. Optuna trials) are never averaged as if they were seeds. Its label is
  the job's command-line overrides that are not already a column (seed, head, dataset, paths, launcher).
"""

from __future__ import annotations

import hashlib
import json

from vadmil.data.identity import feature_identity
from vadmil.report.runs import Run, _get

_VARIANT_SECTIONS = ("model", "data", "trainer", "eval", "training")
_NOT_VARIANT = {
    "data.sample_seed", "data.num_workers", "data.eval_batch_size", "data.eval_batch_rows", "trainer.enable_progress_bar",
    "trainer.log_every_n_steps", "trainer.accelerator", "trainer.devices",
}  # fmt: skip
_NOT_LABEL_KEYS = {"seed", "model", "dataset", "sweep", "logger"}  # columns, the sweep's name, the tracker
_NOT_LABEL_PREFIXES = ("dataset.", "paths.", "hydra.", "hydra/", "oracle.", "logger.")


def digest(data, n: int = 8) -> str:
    """Short sha256 of ``data`` as canonical JSON (sorted keys)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def features_key(metrics: dict) -> tuple[str, str]:
    """(id, label) of a complete run's features, e.g. ``("3f2a9c1b", "synthetic 128-d × 2 crops")``."""
    features = metrics.get("features") or {}
    recipe = feature_identity(features)
    norm = features.get("mean_norm")
    recipe["mean_norm"] = float(f"{norm:.4g}") if isinstance(norm, int | float) else None
    label = f"{features.get('backbone', '?')} {features.get('feature_dim', '?')}-d × {features.get('n_crops', '?')} crops"
    if features.get("pooled"):
        label += " (pooled)"
    return digest(recipe), label


def objective_key(run: Run) -> tuple[str, str]:
    """(name, hash) of the run's objective; the name is its config choice, else its class name."""
    objective = _get(run.config, "model.objective", {}) or {}
    # A run that names its objective itself (self-training: its stages have different ones) is taken at its word.
    name = (run.metrics or {}).get("objective") or run.choices.get("model/objective")
    if not name:
        target = objective.get("_target_", "?") if isinstance(objective, dict) else "?"
        name = str(target).rsplit(".", 1)[-1]
    return str(name), digest(objective, 6)


def variant_key(run: Run) -> tuple[str, tuple[str, ...]]:
    """(hash, overrides) of the run's settings beyond seed, head choice, dataset and features."""
    settings = {}
    for section in _VARIANT_SECTIONS:
        for key, value in _flatten(run.config.get(section, {}), section).items():
            if key not in _NOT_VARIANT:
                settings[key] = value
    return digest(settings), variant_overrides(run.overrides)


def variant_overrides(overrides: list[str]) -> tuple[str, ...]:
    """The overrides that set something other than a table column, sorted: ``("model.optimizer.lr=0.003",)``."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in _NOT_LABEL_KEYS or key.startswith(_NOT_LABEL_PREFIXES) or key in _NOT_VARIANT:
            continue
        kept.append(override.lstrip("+"))
    return tuple(sorted(kept))


def _flatten(node, prefix: str) -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}"))
    return out

"""Feature identity: what makes two stores hold the same features, whatever their paths and speed settings.

The leaderboard groups runs by it (:func:`vadmil.report.keys.features_key`), so re-extracting into another folder
or with other speed settings (workers, batch sizes, device, progress bar, threads) is one feature set. Identity is
the recipe (:data:`vadmil.data.recipe.RECIPE_KEYS`: backbone, weights sha256, crops and crop order, frame size —
resize, decoder backend and resize mode, fps —, snippet geometry, tail policy, normalisation, dtype, pooling) plus
the settings of the producing config that change the numbers and are not already in it (e.g. ``precision``, the
``seed`` of a random-init backbone, a synthetic set's parameters). Torch-free: the report imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

# Keys of a producing config (extract, import or synthesize) that never change the features' numbers: where the
# inputs and outputs are, how fast it ran, and which videos it let through.
NOT_IDENTITY = frozenset({
    "input", "inputs", "output", "store", "manifest", "paths", "hydra", "device", "num_workers", "workers",
    "batch_snippets", "progress", "shard", "num_shards", "threads", "integrity", "integrity_tolerance",
    "allow_short", "weights", "frame_counts", "list", "root", "batch_patches",
})  # fmt: skip
RECIPE_FIELDS = (
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
    "extra_streams",
    "audio_recipe",  # how an extracted audio stream was made (absent: none extracted)
)  # fmt: skip  (== vadmil.data.recipe.RECIPE_KEYS; tests/test_identity.py checks)


def _strip(node):
    if isinstance(node, Mapping):
        return {k: _strip(v) for k, v in node.items() if k not in NOT_IDENTITY}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def config_identity(extraction_config: str) -> dict:
    """The producing config (YAML) without paths, speed settings and video filters; {} when unreadable."""
    try:
        cfg = yaml.safe_load(extraction_config or "") or {}
    except yaml.YAMLError:
        return {"unparsed": extraction_config}
    return _strip(cfg) if isinstance(cfg, Mapping) else {"value": cfg}


def feature_identity(features: Mapping) -> dict:
    """What identifies a store's features: its recipe fields plus :func:`config_identity` of its producing
    config. ``features`` is a run's ``metrics["features"]`` (or a store's root attributes)."""
    identity = {k: features.get(k) for k in RECIPE_FIELDS}
    identity["config"] = config_identity(str(features.get("extraction_config") or ""))
    return identity

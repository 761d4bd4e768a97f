"""A feature store's recipe: the root attributes that say how its features were made.

Two stores (or a store and a scoring run) with different recipes hold features that must not be mixed:
`vadmil extract` refuses to append to, and `vadmil extract-merge` to join, stores whose recipes differ, and
`vadmil score` re-extracts a video only with the recipe its training store records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.identity import RECIPE_FIELDS
from vadmil.errors import VadmilError, check_choice

# Root attributes every store carries (defined torch-free in identity.py for the report); ``extraction_config``
# (the producing config, YAML) is recorded but not compared.
RECIPE_KEYS = RECIPE_FIELDS


def plain_attr(value):
    """h5py attribute value → plain Python (numpy scalars and bytes become int/float/str)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def make_recipe(
    *,
    backbone: str,
    feature_dim: int,
    n_crops: int = 1,
    crop_order: list[str] | None = None,
    geometry: SnippetGeometry | None = None,
    frame_size: str = "",
    normalisation: str = "",
    weights_sha256: str = "random-init",
    feature_dtype: str = "float32",
    pooled: bool = False,
    extra_streams: Mapping[str, int] | None = None,
    extraction_config: str = "",
) -> dict:
    """Root attributes for a new store; ``extraction_config`` is the full producing config as YAML;
    ``extra_streams`` names the per-video side streams and their dims, e.g. ``{"vggish": 128}``."""
    check_choice("feature_dtype", feature_dtype, ("float16", "float32"))
    crop_order = list(crop_order) if crop_order else [f"crop{i}" for i in range(n_crops)]
    if len(crop_order) != n_crops:
        raise VadmilError(f"crop_order names {len(crop_order)} crops but n_crops is {n_crops}")
    return {
        "backbone": backbone,
        "feature_dim": int(feature_dim),
        "n_crops": int(n_crops),
        "crop_order": json.dumps(crop_order),
        **(geometry or SnippetGeometry()).to_attrs(),
        "frame_size": frame_size,
        "normalisation": normalisation,
        "weights_sha256": weights_sha256,
        "feature_dtype": feature_dtype,
        "pooled": bool(pooled),
        "extra_streams": json.dumps(dict(sorted((extra_streams or {}).items()))),
        "extraction_config": extraction_config,
    }


def recipe_differences(a: Mapping, b: Mapping) -> list[str]:
    """'key: a != b' for every recipe key on which two recipes differ."""
    return [
        f"{k}: {plain_attr(a.get(k))!r} != {plain_attr(b.get(k))!r}"
        for k in RECIPE_KEYS
        if plain_attr(a.get(k)) != plain_attr(b.get(k))
    ]


def recipe_of(attrs: Mapping) -> dict:
    """The recipe keys of a store's root attributes (absent keys are None)."""
    return {k: attrs.get(k) for k in RECIPE_KEYS}

"""Paper recipes as presets: each backbone config carries the preprocessing its features are known by.

A backbone config (``conf/backbone/<name>.yaml``) may hold a ``preset`` node (an argument every backbone accepts and
keeps as ``backbone.preset``): a ``name`` and values for the
extraction keys below. ``vadmil extract backbone=c3d`` alone then extracts with the circulated C3D recipe (resize
to 128 x 171, 112 centre crop, 16-frame snippets); a key the user sets explicitly wins, and every such override of
a preset value is recorded in the store (root attributes ``preset`` and ``preset_overrides``) and logged, so a
feature set made "C3D, but 256 short side" says so. Keys neither the user nor the preset sets take
:data:`FALLBACK`. ``short_side`` and ``resize`` are one choice: setting either drops the preset's other one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from vadmil.errors import VadmilError

log = logging.getLogger("vadmil.extract")

FALLBACK = {
    "crops": 1,
    "short_side": None,  # None with resize None: the crop size
    "resize": None,
    "crop_size": None,  # None: the backbone's native crop
    "snippet_len": 16,
    "snippet_stride": 16,
    "tail_policy": "pad_last",
}
PRESET_KEYS = tuple(FALLBACK)


@dataclass(frozen=True)
class Resolved:
    """The extraction values in force, the preset's name, and the user's overrides of preset values
    (key -> {"preset": value, "used": value})."""

    values: dict
    preset: str = "none"
    overrides: dict = field(default_factory=dict)

    def attrs(self) -> dict:
        """Store root attributes recording the preset and its overrides (not recipe fields: the recipe itself
        already holds every value in force)."""
        return {"preset": self.preset, "preset_overrides": json.dumps(self.overrides, sort_keys=True)}


def _plain(value):
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def resolve(cfg: DictConfig) -> Resolved:
    """Values of :data:`PRESET_KEYS` for an extraction config: explicit (non-null) keys, else the backbone's
    preset, else :data:`FALLBACK`."""
    preset = OmegaConf.to_container(cfg.backbone.get("preset") or OmegaConf.create({}))
    name = str(preset.pop("name", "unnamed")) if preset else "none"
    unknown = set(preset) - set(PRESET_KEYS)
    if unknown:
        raise VadmilError(
            f"backbone preset '{name}' sets {sorted(unknown)}, which are not preset keys ({', '.join(PRESET_KEYS)})"
        )
    user = {k: _plain(cfg.get(k)) for k in PRESET_KEYS if cfg.get(k) is not None}
    overrides = {
        k: {"preset": preset[k], "used": user[k]} for k in user if k in preset and preset[k] != user[k]
    }
    for key, other in (("short_side", "resize"), ("resize", "short_side")):
        if key in user and preset.get(other) is not None:  # one choice: the user's replaces the preset's
            overrides[other] = {"preset": preset.pop(other), "used": None}
    values = {**FALLBACK, **preset, **user}
    for key, change in overrides.items():
        log.info("preset %s: %s=%s overrides the preset's %s (recorded in the store)", name, key, change["used"],
                 change["preset"])  # fmt: skip
    return Resolved(values, name, overrides)

"""An extraction config → the backbone, transform, snippet geometry and the recipe a store records.

`vadmil extract` and `vadmil score` both build their extractor here, so a video scored later goes through exactly
the steps its training store's videos went through, and the recipes of the two can be compared field by field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.errors import VadmilError, check_choice
from vadmil.extract.audio import AudioEmbedder
from vadmil.extract.pipeline import Checks, SnippetStream
from vadmil.extract.presets import resolve
from vadmil.extract.probe import INTEGRITY_MODES
from vadmil.extract.transforms import CROP_ORDERS, SnippetTransform

log = logging.getLogger("vadmil.extract")
CROP_MODES = {1: "center", 5: "five", 10: "ten"}


@dataclass
class Extractor:
    """What turns a video into features [T, C, D]: the frozen backbone, the snippet transform and geometry, the
    decoder options, and the recipe (store root attributes) describing all of them."""

    backbone: torch.nn.Module
    transform: SnippetTransform
    geometry: SnippetGeometry
    decoder: DictConfig
    recipe: dict
    checks: Checks = Checks()
    audio: AudioEmbedder | None = (
        None  # streams=[rgb,audio]: the soundtrack's embedder (vadmil.extract.audio)
    )

    def stream(self, videos, batch_snippets: int) -> SnippetStream:
        d = self.decoder
        return SnippetStream(
            videos,
            self.geometry,
            self.transform,
            d.backend,
            d.target_fps,
            batch_snippets,
            d.resize,
            self.checks,
        )


def instantiate_backbone(node: DictConfig) -> torch.nn.Module:
    try:
        return instantiate(node)
    except InstantiationException as err:  # surface the backbone's own message (missing weights, bad file)
        if isinstance(err.__cause__, VadmilError):
            raise err.__cause__ from None
        raise


def build_extractor(cfg: DictConfig) -> Extractor:
    """The extractor of an extraction config (``conf/extract.yaml``'s keys; the backbone's preset fills the
    preprocessing keys left null, see :mod:`vadmil.extract.presets`)."""
    resolved = resolve(cfg)
    v = resolved.values
    check_choice("crops", v["crops"], CROP_MODES)
    torch.manual_seed(cfg.seed)  # random-init backbones are reproducible: resumed and sharded runs match
    backbone = instantiate_backbone(cfg.backbone)
    mode = CROP_MODES[v["crops"]]
    crop_size = v["crop_size"] or backbone.crop_size
    short_side = v["short_side"] or crop_size
    transform = SnippetTransform(short_side=short_side, crop_size=crop_size, crops=mode, mean=backbone.mean,
                                 std=backbone.std, resize=v["resize"])  # fmt: skip
    geometry = SnippetGeometry(v["snippet_len"], v["snippet_stride"], v["tail_policy"])
    audio = audio_embedder(cfg, geometry)
    resize = f"resize to {list(v['resize'])}" if v["resize"] else f"short side {short_side}"
    if cfg.decoder.resize:
        where = (
            "in the decoder"
            if cfg.decoder.resize == "auto"
            else f"decoded at {list(cfg.decoder.resize)}, then"
        )
        resize = f"{where} {resize}"
    recipe = make_recipe(
        backbone=backbone.name, feature_dim=backbone.feature_dim, n_crops=v["crops"], crop_order=CROP_ORDERS[mode],
        geometry=geometry, frame_size=f"{resize}, {mode} {crop_size} crops, fps {cfg.decoder.target_fps or 'native'}, {cfg.decoder.backend}",
        normalisation=f"[0,1] pixels, mean {list(backbone.mean)}, std {list(backbone.std)}",
        weights_sha256=backbone.weights_sha256, feature_dtype=cfg.feature_dtype,
        extraction_config=OmegaConf.to_yaml(cfg), extra_streams={"audio": audio.dim} if audio else None,
    ) | resolved.attrs() | ({"audio_recipe": audio.recipe()} if audio else {})  # fmt: skip
    if backbone.weights_sha256 == "random-init":
        log.warning("extracting with a RANDOMLY INITIALISED %s (backbone.random_init=true): recorded in the store",
                    backbone.name)  # fmt: skip
    # Not recipe fields (they decide which videos are extracted, not how): absent from configs recorded by
    # earlier versions, hence the defaults.
    checks = Checks(str(cfg.get("integrity", "strict")), int(cfg.get("integrity_tolerance", 1)),
                    bool(cfg.get("allow_short", False)))  # fmt: skip
    check_choice("integrity", checks.integrity, INTEGRITY_MODES)
    if checks.tolerance < 0:
        raise VadmilError(f"integrity_tolerance must be >= 0 frames, got {checks.tolerance}")
    return Extractor(backbone, transform, geometry, cfg.decoder, recipe, checks, audio)


def audio_embedder(cfg: DictConfig, geometry: SnippetGeometry) -> AudioEmbedder | None:
    """The audio stream's embedder when ``streams`` asks for ``audio`` (``[rgb]``, the default, or ``[rgb,audio]``)."""
    streams = list(cfg.get("streams") or ["rgb"])
    if streams not in (["rgb"], ["rgb", "audio"]):
        raise VadmilError(
            f"streams must be [rgb] or [rgb,audio] (the store's features come first), got {streams}"
        )
    if streams == ["rgb"]:
        return None
    audio = cfg.get("audio") or {}
    if "net" not in audio:
        raise VadmilError(
            "streams=[rgb,audio] needs an audio section (audio.net, audio.missing); see conf/extract.yaml"
        )
    net = instantiate_backbone(audio.net)
    if net.weights_sha256 == "random-init":
        log.warning(
            "embedding audio with a RANDOMLY INITIALISED %s (audio.net.random_init=true): recorded", net.name
        )
    return AudioEmbedder(
        net, geometry, str(audio.get("missing", "error")), int(audio.get("batch_patches", 64))
    )

"""Paper recipes as backbone presets: `backbone=c3d` alone gives the C3D recipe; overrides are recorded."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests import videos as tv
from tests.test_extract import extract_cfg
from vadmil.commands.base import config_dir
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.extract.builder import build_extractor
from vadmil.extract.jobs import extract
from vadmil.extract.presets import FALLBACK, resolve


def cfg_of(*overrides: str):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("extract", ["input=x", "output=y.h5", *overrides])


def test_c3d_alone_is_the_sports1m_recipe():
    r = resolve(cfg_of("backbone=c3d"))
    assert r.preset == "c3d_sports1m" and r.overrides == {}
    v = r.values
    assert (v["resize"], v["crop_size"], v["snippet_len"], v["snippet_stride"]) == ([128, 171], 112, 16, 16)
    extractor = build_extractor(cfg_of("backbone=c3d", "backbone.random_init=true"))
    assert extractor.transform.resize == (128, 171) and extractor.transform.crop_size == 112
    assert extractor.recipe["frame_size"].startswith("resize to [128, 171], center 112 crops")
    assert (
        extractor.recipe["preset"] == "c3d_sports1m"
        and json.loads(extractor.recipe["preset_overrides"]) == {}
    )


def test_overrides_of_a_preset_are_recorded():
    r = resolve(cfg_of("backbone=c3d", "short_side=256", "snippet_len=8"))
    assert r.values["resize"] is None and r.values["short_side"] == 256  # one resize choice: the user's
    assert r.overrides == {"resize": {"preset": [128, 171], "used": None},
                           "snippet_len": {"preset": 16, "used": 8}}  # fmt: skip
    same = resolve(cfg_of("backbone=c3d", "crop_size=112"))  # the preset's own value: no override
    assert same.overrides == {}


def test_rtfm_and_model_card_presets():
    rtfm = resolve(cfg_of("backbone=i3d_r50_rtfm")).values
    assert (rtfm["short_side"], rtfm["crop_size"], rtfm["crops"], rtfm["tail_policy"]) == (
        256,
        224,
        10,
        "loop",
    )
    for name, side in (
        ("x3d_xs", 182),
        ("x3d_s", 182),
        ("x3d_m", 256),
        ("slowfast_r50", 256),
        ("slow_r50", 256),
    ):
        v = resolve(cfg_of(f"backbone={name}")).values
        assert (v["short_side"], v["crop_size"], v["snippet_len"]) == (side, side, 16), name
    plain = resolve(cfg_of("backbone=i3d_r50"))  # no paper recipe to follow: the fallback
    assert plain.preset == "none" and plain.values == FALLBACK


def test_a_preset_with_unknown_keys_is_an_error():
    cfg = cfg_of("backbone=c3d")
    cfg.backbone.preset = OmegaConf.create({"name": "bad", "sharpen": 2})
    with pytest.raises(VadmilError, match="preset 'bad' sets \\['sharpen'\\]"):
        resolve(cfg)


def test_the_store_records_the_preset_and_overrides(tmp_path):
    video = tv.encode(tmp_path / "a.avi", n=20)
    out = tmp_path / "s.h5"
    assert extract(extract_cfg(f"input={video}", f"output={out}"))["extracted"] == 1
    with FeatureStore(out) as store:
        assert store.attrs["preset"] == "x3d_xs_hub"
        assert json.loads(store.attrs["preset_overrides"]) == {
            "crop_size": {"preset": 182, "used": 32}, "short_side": {"preset": 182, "used": 32},
        }  # fmt: skip

"""Feature identity: stores of one recipe rank as one feature set whatever their paths and speed settings."""

from __future__ import annotations

import json

import pytest

from tests import videos as tv
from tests.test_extract import extract_cfg
from tests.test_report import make_run
from vadmil.data.identity import config_identity, feature_identity
from vadmil.data.store import FeatureStore
from vadmil.extract.jobs import extract
from vadmil.report import write_report
from vadmil.report.keys import features_key
from vadmil.training.train import store_summary


@pytest.fixture(scope="module")
def summaries(tmp_path_factory) -> dict:
    """The features summaries (as a run records them) of three stores of two tiny videos: two of one recipe
    extracted into other folders with other workers and batch sizes, one with another tail policy."""
    root = tmp_path_factory.mktemp("identity")
    videos = root / "videos"
    videos.mkdir()
    tv.encode(videos / "a.avi", n=40)
    tv.encode(videos / "b.avi", n=33)
    settings = {
        "first": ["num_workers=0", "batch_snippets=1", "progress=false", "device=cpu"],
        "second": ["num_workers=1", "batch_snippets=4", "progress=true", "device=auto"],
        "other": ["num_workers=0", "batch_snippets=4", "tail_policy=loop"],
    }
    out = {}
    for name, overrides in settings.items():
        store_path = root / name / f"{name}_features.h5"
        result = extract(extract_cfg(f"input={videos}", f"output={store_path}", *overrides))
        assert result["extracted"] == 2
        with FeatureStore(store_path) as store:
            out[name] = store_summary(store)
    return out


def test_paths_and_speed_settings_are_not_identity(summaries):
    first, second, other = summaries["first"], summaries["second"], summaries["other"]
    assert first["extraction_config"] != second["extraction_config"]  # the recorded configs do differ ...
    assert feature_identity(first) == feature_identity(
        second
    )  # ... but not in anything that changes features
    assert features_key({"features": first}) == features_key({"features": second})
    assert features_key({"features": first}) != features_key({"features": other})


def test_two_stores_of_one_recipe_rank_as_one_feature_set(summaries, tmp_path):
    root = tmp_path / "runs"
    for seed, (name, auc) in enumerate((("first", 0.8), ("second", 0.84), ("other", 0.9))):
        run = make_run(root, f"{seed}_fcn_{name}", seed=seed, auc=auc, store=summaries[name]["store"])
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["features"] = summaries[name]
        (run / "metrics.json").write_text(json.dumps(metrics))
    result = write_report([root], tmp_path / "out")
    sizes = sorted(len(g.runs) for s in result["sections"] for g in s.groups)
    assert len(result["sections"]) == 2 and sizes == [1, 2]  # first + second together; other (loop) apart


def test_settings_that_change_the_numbers_are_identity():
    base = "backbone: {arch: x3d_xs, weights: /a/w.pyth}\nprecision: fp32\nseed: 0\nnum_workers: 2\noutput: /a.h5\n"
    moved = "backbone: {arch: x3d_xs, weights: /b/w.pyth}\nprecision: fp32\nseed: 0\nnum_workers: 8\noutput: /b.h5\n"
    assert config_identity(base) == config_identity(moved) == {
        "backbone": {"arch": "x3d_xs"}, "precision": "fp32", "seed": 0,
    }  # fmt: skip
    assert config_identity(base) != config_identity(base.replace("fp32", "bf16"))
    assert config_identity(base) != config_identity(base.replace("seed: 0", "seed: 1"))


def test_the_report_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, vadmil.report, vadmil.report.keys; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )

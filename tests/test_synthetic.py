"""The embedded synthetic data set: determinism, manifest consistency, a real planted signal, regeneration rules."""

import json
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
import yaml

from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.synthetic import SyntheticSpec, ensure_synthetic, generate
from vadmil.errors import VadmilError

SMALL = {
    "n_train_normal": 3,
    "n_train_abnormal": 4,
    "n_test_normal": 2,
    "n_test_abnormal": 3,
    "feature_dim": 16,
    "n_crops": 2,
    "min_snippets": 8,
    "max_snippets": 24,
}


def _generate(tmp_path, name="syn", **params):
    spec = SyntheticSpec(**{**SMALL, **params})
    store, manifest = tmp_path / f"{name}.h5", tmp_path / f"{name}.json"
    generate(store, manifest, spec)
    return store, manifest, spec


def _load(store, manifest):
    rows = json.loads(manifest.read_text())["videos"]
    with FeatureStore(store) as s:
        feats = {v: s.read(v) for v in s.ids()}
        frames = {v: s.n_frames(v) for v in s.ids()}
    return rows, feats, frames


def test_generate_is_deterministic_in_its_spec(tmp_path):
    a = _generate(tmp_path, "a")
    b = _generate(tmp_path, "b")
    c = _generate(tmp_path, "c", seed=1)
    rows_a, feats_a, frames_a = _load(*a[:2])
    rows_b, feats_b, frames_b = _load(*b[:2])
    rows_c, feats_c, _ = _load(*c[:2])
    assert a[1].read_text() == b[1].read_text()
    assert sorted(feats_a) == sorted(feats_b) and frames_a == frames_b
    for v in feats_a:
        np.testing.assert_array_equal(feats_a[v], feats_b[v])
    # another seed: same ids, different data
    assert sorted(feats_c) == sorted(feats_a)
    assert any(
        feats_a[v].shape != feats_c[v].shape or not np.array_equal(feats_a[v], feats_c[v]) for v in feats_a
    )
    assert rows_a != rows_c


def test_manifest_matches_spec_and_store(tmp_path):
    store, manifest, spec = _generate(tmp_path)
    rows, feats, frames = _load(store, manifest)
    counts = Counter((r["split"], r["label"]) for r in rows)
    assert counts == {
        ("train", 0): spec.n_train_normal,
        ("train", 1): spec.n_train_abnormal,
        ("test", 0): spec.n_test_normal,
        ("test", 1): spec.n_test_abnormal,
    }
    assert sorted(r["video_id"] for r in rows) == sorted(feats)
    for r in rows:
        n_frames, intervals = frames[r["video_id"]], r["intervals"]
        if r["label"] == 0:
            assert intervals == []
        else:
            assert 1 <= len(intervals) <= 2
            for start, end in intervals:  # frames, end inclusive
                assert 0 <= start <= end < n_frames
    # no leftovers from the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn.h5", "syn.json"]


def test_store_recipe_and_geometry_are_consistent(tmp_path):
    store, _, spec = _generate(tmp_path)
    with FeatureStore(store) as s:
        assert s.validate() == []  # every video's snippet count matches its n_frames under pad_last
        assert s.feature_dim == spec.feature_dim and s.n_crops == spec.n_crops
        assert s.attrs["backbone"] == "synthetic"
        assert s.geometry.tail_policy == "pad_last" and s.geometry.length == spec.snippet_len
        for v in s.ids():
            t, n_frames = s.n_snippets(v), s.n_frames(v)
            assert spec.min_snippets <= t <= spec.max_snippets
            assert (t - 1) * spec.snippet_len < n_frames <= t * spec.snippet_len


def test_planted_anomalies_are_detectable(tmp_path):
    """Without fitting anything: abnormal snippets lie further from their video's median feature than the
    other snippets of abnormal videos do. (A small feature_dim keeps the one planted direction visible in a plain
    distance; at the default 128 dims only a learned projection sees it.)"""
    store, manifest, spec = _generate(
        tmp_path, n_train_normal=0, n_train_abnormal=12, n_test_normal=0, n_test_abnormal=0, feature_dim=8,
        min_snippets=40, max_snippets=80,
    )  # fmt: skip
    rows, feats, _ = _load(store, manifest)
    inside, outside = [], []
    for r in rows:
        x = feats[r["video_id"]].mean(axis=1)  # [T, D], crops averaged
        dist = np.linalg.norm(x - np.median(x, axis=0), axis=-1)
        abnormal = np.zeros(len(x), dtype=bool)
        for start, end in r["intervals"]:
            abnormal[start // spec.snippet_len : end // spec.snippet_len + 1] = True
        assert abnormal.any() and not abnormal.all()
        inside.append(dist[abnormal])
        outside.append(dist[~abnormal])
    inside, outside = np.concatenate(inside), np.concatenate(outside)
    assert inside.mean() > 1.3 * outside.mean()  # 1.65 at seed 0; above 1.34 for seeds 0-19
    # a rank statistic, too: a random abnormal snippet usually lies further out than a random other one
    auc = (inside[:, None] > outside[None, :]).mean()
    assert auc > 0.75  # 0.88 at seed 0; above 0.75 for seeds 0-19


def test_ensure_synthetic_reuses_matching_store(tmp_path):
    store, manifest = str(tmp_path / "syn.h5"), str(tmp_path / "syn.json")
    assert ensure_synthetic(store, manifest, **SMALL) == (store, manifest)
    stamps = (tmp_path / "syn.h5").stat().st_mtime_ns, (tmp_path / "syn.json").stat().st_mtime_ns
    assert ensure_synthetic(store, manifest, **SMALL) == (store, manifest)
    assert ((tmp_path / "syn.h5").stat().st_mtime_ns, (tmp_path / "syn.json").stat().st_mtime_ns) == stamps


def test_ensure_synthetic_regenerates_on_changed_parameter(tmp_path):
    store, manifest = str(tmp_path / "syn.h5"), str(tmp_path / "syn.json")
    ensure_synthetic(store, manifest, **SMALL)
    ensure_synthetic(store, manifest, **{**SMALL, "feature_dim": 24, "seed": 3})
    with FeatureStore(store) as s:
        assert s.feature_dim == 24
        assert yaml.safe_load(s.attrs["extraction_config"]) == asdict(
            SyntheticSpec(**{**SMALL, "feature_dim": 24, "seed": 3})
        )


def test_ensure_synthetic_regenerates_missing_manifest(tmp_path):
    store, manifest = tmp_path / "syn.h5", tmp_path / "syn.json"
    ensure_synthetic(str(store), str(manifest), **SMALL)
    text = manifest.read_text()
    manifest.unlink()
    ensure_synthetic(str(store), str(manifest), **SMALL)
    assert manifest.read_text() == text


def test_ensure_synthetic_never_overwrites_other_store(tmp_path):
    path = tmp_path / "i3d.h5"
    with FeatureStore.create(path, make_recipe(backbone="i3d_r50", feature_dim=16, n_crops=2)) as s:
        s.append("v", np.ones((3, 2, 16), dtype=np.float32), n_frames=48, fps=30.0)
    before = path.stat().st_mtime_ns
    with pytest.raises(
        VadmilError, match=r"i3d\.h5 exists and is not a synthetic store; choose another dataset\.store"
    ):
        ensure_synthetic(str(path), str(tmp_path / "m.json"), **SMALL)
    assert path.stat().st_mtime_ns == before
    assert not (tmp_path / "m.json").exists()
    with FeatureStore(path) as s:
        assert s.ids() == ["v"] and s.attrs["backbone"] == "i3d_r50"


def test_bad_generator_parameters_are_user_errors(tmp_path):
    from vadmil.data.synthetic import ensure_synthetic
    from vadmil.errors import VadmilError

    store, manifest = str(tmp_path / "s.h5"), str(tmp_path / "m.json")
    with pytest.raises(VadmilError, match="unknown synthetic data parameter.*n_videos"):
        ensure_synthetic(store, manifest, n_videos=3)
    with pytest.raises(VadmilError, match="feature_dim=4 is too small"):
        ensure_synthetic(store, manifest, feature_dim=4)


def test_parallel_jobs_preparing_the_same_data_wait_for_one_generator(tmp_path):
    """Sweep jobs start together on fresh data: all must succeed and share one generated store."""
    from concurrent.futures import ProcessPoolExecutor

    store, manifest = str(tmp_path / "s.h5"), str(tmp_path / "s.json")
    params = dict(n_train_normal=4, n_train_abnormal=4, n_test_normal=2, n_test_abnormal=2, feature_dim=8)
    with ProcessPoolExecutor(3) as pool:
        results = list(pool.map(_ensure, [(store, manifest, params)] * 3))
    assert results == [(store, manifest)] * 3
    with FeatureStore(store) as fs:
        assert len(fs) == 12


def _ensure(args):
    store, manifest, params = args
    return ensure_synthetic(store, manifest, **params)

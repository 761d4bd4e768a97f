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
    distance; at the default 128 dims only a learned projection sees it. Additive events only: at 8 dims the
    norm-keeping types turn a snippet almost onto u, which a distance to the median does not see.)"""
    store, manifest, spec = _generate(
        tmp_path, n_train_normal=0, n_train_abnormal=12, n_test_normal=0, n_test_abnormal=0, feature_dim=8,
        min_snippets=40, max_snippets=80, anomaly_types=["additive"],
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


# --- anomaly types (vadmil/data/synthetic.py docstring) ---------------------------------------------------------


def test_each_anomaly_type_moves_the_feature_as_documented():
    from vadmil.data.synthetic import _plant

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)) * 3
    u = np.eye(16)[3]
    spec = SyntheticSpec(feature_dim=16, anomaly_strength=2.0, lower_norm_scale=0.4)
    norm = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(_plant(x, u, "additive", spec), x + 2.0 * u)
    rotated = _plant(x, u, "constant_norm", spec)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), norm)  # direction changes, norm does not
    np.testing.assert_allclose(
        rotated, norm[:, None] * (x + 2 * u) / np.linalg.norm(x + 2 * u, axis=1)[:, None]
    )
    lowered = _plant(x, u, "lower_norm", spec)
    np.testing.assert_allclose(np.linalg.norm(lowered, axis=1), 0.4 * norm)
    for moved in (rotated, lowered):  # every type moves the feature towards u
        assert (moved @ u - x @ u * np.linalg.norm(moved, axis=1) / norm).mean() > 0.5


def test_categories_record_each_abnormal_videos_type(tmp_path):
    store, manifest, spec = _generate(tmp_path, n_test_abnormal=30, n_train_abnormal=0)
    rows = json.loads(manifest.read_text())["videos"]
    for r in rows:
        assert r["category"] == ("normal" if r["label"] == 0 else r["category"])
        assert r["label"] == 0 or r["category"] in spec.anomaly_types
    assert {r["category"] for r in rows if r["label"]} == {"additive", "constant_norm", "lower_norm"}
    single = _generate(tmp_path, "one", anomaly_types=["lower_norm"])[1]
    assert {r["category"] for r in json.loads(single.read_text())["videos"] if r["label"]} == {"lower_norm"}


def test_magnitude_inside_events_rises_stays_or_falls_with_the_type(tmp_path):
    """Noise-free, distractor-free data: the mean snippet norm inside events relative to the same videos' other
    snippets is > 1 (additive), = 1 (constant_norm, exactly), = lower_norm_scale (lower_norm, exactly)."""
    ratios = {}
    for kind in ("additive", "constant_norm", "lower_norm"):
        store, manifest, spec = _generate(
            tmp_path, kind, anomaly_types=[kind], crop_noise=0.0, distractor_rate=0.0, n_train_abnormal=8
        )
        rows, feats, _ = _load(store, manifest)
        inside, outside = [], []
        for r in (r for r in rows if r["label"]):
            n = np.linalg.norm(feats[r["video_id"]][:, 0], axis=-1)
            event = np.zeros(len(n), dtype=bool)
            for start, end in r["intervals"]:
                event[start // spec.snippet_len : end // spec.snippet_len + 1] = True
            inside.append(n[event]), outside.append(n[~event])
        ratios[kind] = np.concatenate(inside).mean() / np.concatenate(outside).mean()
    assert ratios["additive"] > 1.05
    assert 0.85 < ratios["constant_norm"] < 1.15
    assert ratios["lower_norm"] < 0.7


@pytest.mark.parametrize(
    "params, message",
    [({"anomaly_types": ["louder"]}, "unknown synthetic anomaly type 'louder'"),
     ({"anomaly_types": []}, "must list distinct types"),
     ({"lower_norm_scale": 1.5}, "lower_norm_scale must lie in")],
)  # fmt: skip
def test_bad_anomaly_type_parameters_are_user_errors(params, message):
    with pytest.raises(VadmilError, match=message):
        SyntheticSpec(**params)

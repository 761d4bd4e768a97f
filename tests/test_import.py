"""`vadmil import`: public feature layouts → store, exact values, recipe, resumability, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import run_vadmil
from vadmil.commands.base import config_dir
from vadmil.data.importers import TENCROP_ORDER, WU_ORDER
from vadmil.data.importing import run_import
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError


def import_cfg(*overrides: str):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("import", ["progress=false", *overrides])


def rtfm_folder(root, n=3, crops=10, dim=32):
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(n):
        x = rng.normal(size=(4 + i, crops, dim)).astype(np.float32)
        np.save(root / f"Abuse00{i}_x264_i3d.npy", x)
        arrays[f"Abuse00{i}_x264"] = x
    return arrays


def test_rtfm_folder_round_trips_exactly_with_its_recipe(tmp_path):
    arrays = rtfm_folder(tmp_path / "feats")
    out = tmp_path / "s.h5"
    result = run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}"))
    assert result["imported"] == 3 and result["failed"] == []
    with FeatureStore(out) as store:
        assert store.ids() == sorted(arrays)
        for video_id, x in arrays.items():
            np.testing.assert_array_equal(store.read(video_id), x)
            assert store.n_frames(video_id) == 16 * len(x)  # the frames T snippets span
        recipe = store.recipe()
        assert recipe["backbone"] == "i3d_r50" and recipe["tail_policy"] == "loop"
        assert json.loads(recipe["crop_order"]) == list(TENCROP_ORDER)
        assert store.validate() == []
        assert store.mean_norm() == pytest.approx(
            np.mean([np.linalg.norm(x, axis=-1).mean() for x in arrays.values()]), rel=0.2
        )


def test_float16_store_is_within_tolerance(tmp_path):
    arrays = rtfm_folder(tmp_path / "feats", n=1, crops=5)
    out = tmp_path / "s.h5"
    run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}", "recipe.feature_dtype=float16"))
    with FeatureStore(out) as store:
        (video_id,) = arrays
        np.testing.assert_allclose(store.read(video_id), arrays[video_id], rtol=1e-3, atol=1e-3)
        assert json.loads(store.recipe()["crop_order"]) == list(TENCROP_ORDER[:5])


def test_wu_crops_stack_in_order_with_the_audio_stream(tmp_path):
    folder = tmp_path / "xd"
    folder.mkdir()
    rng = np.random.default_rng(1)
    name = "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"
    crops = [rng.normal(size=(6, 16)).astype(np.float32) for _ in range(5)]
    for c, x in enumerate(crops):
        np.save(folder / f"{name}__{c}.npy", x)
    audio = rng.normal(size=(6, 128)).astype(np.float32)
    np.save(folder / f"{name}__vggish.npy", audio)
    out = tmp_path / "xd.h5"
    run_import(import_cfg("format=wu", "format.reader.n_crops=5", f"input={folder}", f"output={out}"))
    with FeatureStore(out) as store:
        assert store.ids() == [name]
        np.testing.assert_array_equal(store.read(name), np.stack(crops, axis=1))
        np.testing.assert_array_equal(store.read_extra(name, "audio"), audio)
        assert json.loads(store.recipe()["crop_order"]) == list(WU_ORDER[:5])


def test_sultani_needs_frame_counts_and_is_stored_pooled(tmp_path):
    folder = tmp_path / "c3d"
    folder.mkdir()
    x = np.random.default_rng(2).random((32, 4096))
    np.savetxt(folder / "Arrest001_x264_C.txt", x, fmt="%.6f")
    out = tmp_path / "c3d.h5"
    without = run_import(import_cfg("format=sultani", f"input={folder}", f"output={out}"))
    assert without["imported"] == 0 and "frame_counts" in without["failed"][0][1]
    counts = tmp_path / "counts.csv"
    counts.write_text("video_id,n_frames,fps\nArrest001_x264.mp4,2400,30\n")
    result = run_import(
        import_cfg("format=sultani", f"input={folder}", f"output={out}", f"frame_counts={counts}")
    )
    assert result["imported"] == 1
    with FeatureStore(out) as store:
        assert store.pooled and store.n_frames("Arrest001_x264") == 2400
        np.testing.assert_allclose(store.read("Arrest001_x264")[:, 0], x, atol=1e-6)


def test_a_bad_video_is_reported_skipped_and_the_rest_imported_then_resumed(tmp_path):
    arrays = rtfm_folder(tmp_path / "feats")
    bad = tmp_path / "feats" / "Broken001_x264_i3d.npy"
    np.save(bad, np.full((4, 10, 32), np.nan, dtype=np.float32))
    out = tmp_path / "s.h5"
    first = run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}"))
    assert first["imported"] == 3 and [v for v, _ in first["failed"]] == ["Broken001_x264"]
    assert "Broken001_x264_i3d.npy" in first["failed"][0][1] and "NaN/Inf" in first["failed"][0][1]
    with FeatureStore(out) as store:
        assert "Broken001_x264" not in store
    np.save(bad, np.ones((4, 10, 32), dtype=np.float32))  # the user fixes the file and re-runs
    second = run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}"))
    assert (second["imported"], second["skipped"], second["failed"]) == (1, 3, [])
    with FeatureStore(out) as store:
        assert store.ids() == sorted([*arrays, "Broken001_x264"])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: None, "no .*npy files"),
        (lambda d: [np.save(d / f"{n}.npy", np.zeros((3, 10, 8))) for n in ("a_i3d", "a")], "a_i3d.npy"),
    ],
    ids=["empty folder", "duplicate ids"],
)
def test_layout_errors_stop_before_anything_is_written(tmp_path, make, match):
    folder = tmp_path / "feats"
    folder.mkdir()
    make(folder)
    out = tmp_path / "s.h5"
    with pytest.raises(VadmilError, match=match):
        run_import(import_cfg(f"input={folder}", f"output={out}"))
    assert not out.exists()


def test_appending_to_a_store_of_another_recipe_names_the_field(tmp_path):
    rtfm_folder(tmp_path / "feats")
    out = tmp_path / "s.h5"
    run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}"))
    with pytest.raises(VadmilError, match="different recipe.*backbone: 'i3d_r50' != 'x3d_m'"):
        run_import(import_cfg(f"input={tmp_path / 'feats'}", f"output={out}", "recipe.backbone=x3d_m"))


def test_import_command_then_train_on_the_imported_store(tmp_path):
    """The documented path: import RTFM-style files, then train with a manifest of labels and intervals."""
    folder = tmp_path / "feats"
    folder.mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for split, n in (("train", 6), ("test", 4)):
        for i in range(n):
            label = i % 2
            x = rng.normal(size=(20, 2, 8)).astype(np.float32)
            if label:
                x[5:10] += 3.0
            video_id = f"{split}{i:02d}"
            np.save(folder / f"{video_id}_i3d.npy", x)
            rows.append(
                {
                    "video_id": video_id,
                    "split": split,
                    "label": label,
                    "intervals": [[80, 159]] if label else [],
                }
            )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"videos": rows}))
    imported = run_vadmil("import", "format=rtfm", f"input={folder}", "output=features/mine.h5", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "10 imported, 0 already there, 0 failed" in imported.stdout
    trained = run_vadmil(
        "train", "dataset=manifest", "dataset.name=mine", "dataset.store=features/mine.h5",
        f"dataset.annotations.path={manifest}", "trainer.max_steps=6", "data.batch_size=4",
        "trainer.enable_progress_bar=false", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "mine" / "fcn").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["features"]["backbone"] == "i3d_r50" and metrics["n_videos"]["test"] == 4

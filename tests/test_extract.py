"""`vadmil extract`: real decoding → snippets → crops → frozen backbone → store; resume, shards, bad videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import run_vadmil
from tests.test_cli import assert_user_error
from vadmil.commands.base import config_dir
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.extract.jobs import extract, merge

VTEST = Path(__file__).resolve().parents[2] / "shared" / "videos" / "vtest.avi"
SMALL = ["backbone=x3d_xs", "backbone.random_init=true", "crop_size=32", "short_side=32", "progress=false",
         "num_workers=0"]  # fmt: skip


def extract_cfg(*overrides: str):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("extract", [*SMALL, *overrides])


def write_video(path: Path, n_frames: int, size=(48, 64), fps: int = 10) -> Path:
    """A small MPEG-4 video whose frame i has brightness 4·i plus a moving square."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            frame = np.full((*size, 3), (4 * i) % 256, dtype=np.uint8)
            frame[8:20, (2 * i) % (size[1] - 12) :][:, :12] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name, n in (("cam_a", 40), ("cam_b", 33), ("cam_c", 57)):
        write_video(folder / f"{name}.mp4", n)
    return folder


def test_extracts_every_video_with_its_recorded_recipe(videos, tmp_path):
    out = tmp_path / "s.h5"
    result = extract(extract_cfg(f"input={videos}", f"output={out}", "crops=5", "tail_policy=pad_last"))
    assert (result["extracted"], result["failed"]) == (3, {})
    with FeatureStore(out) as store:
        assert store.ids() == ["cam_a", "cam_b", "cam_c"]
        assert [store.n_frames(v) for v in store.ids()] == [40, 33, 57]
        assert [store.n_snippets(v) for v in store.ids()] == [3, 3, 4]  # ceil(n / 16) with pad_last
        x = store.read("cam_a")
        assert x.shape == (3, 5, store.feature_dim) and np.isfinite(x).all()
        attrs = store.attrs
        assert attrs["weights_sha256"] == "random-init" and attrs["backbone"] == "x3d_xs"
        assert json.loads(attrs["crop_order"]) == [
            "top_left",
            "top_right",
            "bottom_left",
            "bottom_right",
            "center",
        ]
        assert "backbone" in attrs["extraction_config"] and store.info("cam_a")["fps"] == pytest.approx(10)
        assert store.validate() == []


@pytest.mark.skipif(not VTEST.exists(), reason=f"the real test video is absent ({VTEST})")
def test_real_surveillance_video(tmp_path):
    """795 frames at 10 fps: 50 snippets with pad_last (49 with drop, checked in test_decode)."""
    tail_policy, n_snippets = "pad_last", 50
    out = tmp_path / "vtest.h5"
    result = extract(
        extract_cfg(f"input={VTEST}", f"output={out}", f"tail_policy={tail_policy}", "num_workers=1")
    )
    assert result["extracted"] == 1
    with FeatureStore(out) as store:
        assert store.n_frames("vtest") == 795 and store.n_snippets("vtest") == n_snippets
        assert store.info("vtest")["fps"] == pytest.approx(10)


def test_rerun_skips_and_resume_matches_an_uninterrupted_run(videos, tmp_path):
    full = tmp_path / "full.h5"
    extract(extract_cfg(f"input={videos}", f"output={full}"))
    again = extract(extract_cfg(f"input={videos}", f"output={full}"))
    assert (again["extracted"], again["skipped"]) == (0, 3)
    # An interrupted run: kill -9 once the first video is durable, then resume.
    part = tmp_path / "part.h5"
    cmd = [sys.executable, "-m", "vadmil.cli", "extract", *SMALL, f"input={videos}", f"output={part}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pending = part.with_name(part.name + ".pending")
    deadline = time.monotonic() + 120
    while not any(pending.glob("*.h5")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with FeatureStore(part) as store:  # opens, and holds the finished video(s)
        assert 1 <= len(store) <= 3 and store.validate() == []
    extract(extract_cfg(f"input={videos}", f"output={part}"))
    with FeatureStore(full) as a, FeatureStore(part) as b:
        assert a.ids() == b.ids()
        for v in a.ids():
            np.testing.assert_array_equal(a.read(v), b.read(v))


def test_shards_merge_to_the_single_run(videos, tmp_path):
    single = tmp_path / "single.h5"
    extract(extract_cfg(f"input={videos}", f"output={single}"))
    shards = [tmp_path / f"shard{i}.h5" for i in range(2)]
    for i, shard in enumerate(shards):
        extract(extract_cfg(f"input={videos}", f"output={shard}", f"shard={i}", "num_shards=2"))
    with FeatureStore(shards[0]) as s0, FeatureStore(shards[1]) as s1:
        assert s0.ids() == ["cam_a", "cam_c"] and s1.ids() == ["cam_b"]
    merged = tmp_path / "merged.h5"
    assert merge([str(s) for s in shards], str(merged)) == 3
    with FeatureStore(single) as a, FeatureStore(merged) as b:
        assert a.ids() == b.ids()
        for v in a.ids():
            np.testing.assert_array_equal(a.read(v), b.read(v))


def test_merge_refuses_stores_of_other_recipes(videos, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    extract(extract_cfg(f"input={videos / 'cam_a.mp4'}", f"output={a}"))
    extract(extract_cfg(f"input={videos / 'cam_b.mp4'}", f"output={b}", "crops=5"))
    with pytest.raises(VadmilError, match="another recipe.*n_crops: 1 != 5"):
        merge([str(a), str(b)], str(tmp_path / "m.h5"))


def test_bad_videos_are_reported_and_the_rest_extracted(videos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_video(folder / "good.mp4", 20)
    write_video(folder / "short.mp4", 9)  # fewer frames than one snippet with tail_policy=drop
    (folder / "notes.mp4").write_text("this is not a video\n")
    (folder / "empty.avi").write_bytes(b"")
    good = (videos / "cam_c.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    out = tmp_path / "s.h5"
    result = run_vadmil(
        "extract", *SMALL, f"input={folder}", f"output={out}", "tail_policy=drop", cwd=tmp_path
    )
    assert_user_error(result, "failed", "failures.json")
    with FeatureStore(out) as store:
        assert "good" in store and "notes" not in store and "empty" not in store and "short" not in store
        assert "truncated" not in store or store.validate() == []  # a decodable prefix is fine, never garbage
    failures = json.loads(out.with_name(out.name + ".failures.json").read_text())
    for name in ("notes.mp4", "empty.avi", "short.mp4"):
        assert any(path.endswith(name) for path in failures), failures
    assert "fewer than one 16-frame snippet" in next(
        v for k, v in failures.items() if k.endswith("short.mp4")
    )


def test_weights_are_required_unless_random_init_is_explicit(videos, tmp_path):
    with pytest.raises(VadmilError, match="random_init=true"):
        extract(extract_cfg(f"input={videos}", f"output={tmp_path / 's.h5'}", "backbone.random_init=false"))
    assert not (tmp_path / "s.h5").exists()


def test_decoder_side_resize_is_recorded_and_close_to_torch_resize(videos, tmp_path):
    a, b = tmp_path / "torch.h5", tmp_path / "decoder.h5"
    extract(extract_cfg(f"input={videos / 'cam_a.mp4'}", f"output={a}"))
    extract(extract_cfg(f"input={videos / 'cam_a.mp4'}", f"output={b}", "decoder.resize=auto"))
    with FeatureStore(a) as sa, FeatureStore(b) as sb:
        assert "in the decoder" in sb.attrs["frame_size"] and "in the decoder" not in sa.attrs["frame_size"]
        assert sa.recipe() != sb.recipe()  # different pixels: never appended to one store
        assert sa.read("cam_a").shape == sb.read("cam_a").shape


def test_sharded_multirun_on_the_joblib_launcher(videos, tmp_path):
    result = run_vadmil(
        "extract", "-m", *SMALL, f"input={videos}", "output=shard${shard}.h5", "shard=0,1", "num_shards=2",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert merge([str(tmp_path / "shard0.h5"), str(tmp_path / "shard1.h5")], str(tmp_path / "all.h5")) == 3

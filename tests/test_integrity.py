"""Damaged and unusual encoder-made files: every backend gives the documented outcome, and the same frames.

Outcomes (README, "Damaged videos"): a clean file decodes to all its frames; a file cut short or zeroed in the
middle fails under integrity=strict (naming expected vs found) — at open when the container's declared count or
duration shows it, else when decoding ends; integrity=warn extracts the frames that are there, the same count with
every backend; an edit-listed H.264 MP4 gives the same real frames with every backend (decord's trailing
duplicates dropped); variable-rate and wrong-header-rate files pass, with times from their timestamps.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests import videos as tv
from vadmil.errors import VadmilError
from vadmil.extract.decode import open_video, resample_times
from vadmil.extract.probe import integrity_problems, probe_stream

HAS_CV2 = importlib.util.find_spec("cv2") is not None
ALL = ["decord", "pyav"] + (["opencv"] if HAS_CV2 else [])
BACKENDS = [
    "decord",
    "pyav",
    pytest.param(
        "opencv", marks=pytest.mark.skipif(not HAS_CV2, reason="opencv-python-headless not installed")
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("integrity")
    out = {
        "clean.avi": tv.encode(root / "clean.avi", "mpeg4"),
        "clean.mp4": tv.encode(root / "clean.mp4", "mpeg4"),
    }
    if tv.has_x264():
        out["clean.mkv"] = tv.encode(root / "clean.mkv", "libx264")
        out["edit.mp4"] = tv.edit_listed(root / "edit.mp4")
    out["vfr.mkv"] = tv.variable_rate(root / "vfr.mkv")
    out["wrong_fps.mkv"] = tv.wrong_fps(root / "wrong_fps.mkv")
    for name in list(out):
        if name.startswith("clean"):
            out["zeroed_" + name] = tv.zero_middle(out[name], root / f"zeroed_{name}")
            for frac in (0.3, 0.6, 0.9):
                out[f"cut{int(frac * 100)}_{name}"] = tv.cut(
                    out[name], root / f"cut{int(frac * 100)}_{name}", frac
                )
    return out


def decode(path, backend, **kwargs):
    with open_video(path, backend, **kwargs) as video:
        frames = np.concatenate(list(video.chunks(chunk_frames=7)))
        return video, frames


def means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clean_files_decode_whole_with_times_from_timestamps(files, backend):
    for name in (n for n in files if n.startswith("clean")):
        video, frames = decode(files[name], backend)
        assert video.info.n_frames == len(frames) == 48 and video.problems == [], name
        np.testing.assert_allclose(means(frames), [tv.level(i) for i in range(48)], atol=3, err_msg=name)
        np.testing.assert_allclose(video.times, np.arange(48) / 10, atol=1e-6)
        assert (video.info.fps, video.info.duration_s, video.info.time_source) == (
            10.0,
            pytest.approx(4.8),
            "timestamps",
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_cut_files_fail_strict_naming_expected_and_found(files, backend):
    for name in (n for n in files if n.startswith("cut")):
        with pytest.raises(VadmilError) as e:
            decode(files[name], backend)
        message = str(e.value)
        assert str(files[name]) in message and "\n" not in message, message
        # Either the container's declaration shows the loss (expected vs found), or the file no longer opens.
        assert ("declares" in message and "missing" in message) or "cannot read" in message, message


def test_cut_files_under_warn_give_one_count_for_every_backend(files):
    kept = 0
    for name in (n for n in files if n.startswith("cut")):
        counts, firsts = {}, {}
        for backend in ALL:
            try:
                video, frames = decode(files[name], backend, integrity="warn")
            except VadmilError as err:
                assert "cannot read" in str(err) or "decoding" in str(err)  # nothing left to decode
                counts[backend] = None
                continue
            assert video.problems and len(frames) == video.info.n_frames
            counts[backend], firsts[backend] = len(frames), means(frames)
        assert len(set(counts.values())) == 1, (name, counts)
        if next(iter(counts.values())):
            kept += 1
            for m in firsts.values():  # the last frame may be cut mid-packet (the decoder conceals it)
                np.testing.assert_allclose(
                    m[:-1], [tv.level(i) for i in range(len(m) - 1)], atol=3, err_msg=name
                )
    assert kept >= 2  # the AVI and MKV cuts keep a decodable prefix


@pytest.mark.parametrize("backend", BACKENDS)
def test_zeroed_middle_fails_with_every_backend(files, backend):
    for name in (n for n in files if n.startswith("zeroed")):
        with pytest.raises(VadmilError) as e:
            decode(files[name], backend)
        assert str(files[name]) in str(e.value) and "\n" not in str(e.value)
    # The AVI's loss shows in its header before any decoding: expected 48 frames, found fewer.
    with pytest.raises(VadmilError, match=r"declares 48 frames but only \d+ are in the file"):
        open_video(files["zeroed_clean.avi"], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edit_listed_h264_gives_the_real_frames_only(files, backend):
    if "edit.mp4" not in files:
        pytest.skip("libx264 not available in this PyAV build")
    video, frames = decode(files["edit.mp4"], backend)
    # 37 packets, the first 3 discarded by the edit list: 34 real frames, the 4th to the 37th encoded.
    assert video.probe.n_packets == 37 and video.info.n_frames == len(frames) == 34
    np.testing.assert_allclose(means(frames), [tv.level(i) for i in range(3, 37)], atol=3)
    assert np.all(np.diff(means(frames)) > 0)  # no repeated last frame (decord's duplicate)
    np.testing.assert_allclose(video.times, np.arange(34) / 10, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_rate_file_times_follow_its_timestamps(files, backend):
    video, frames = decode(files["vfr.mkv"], backend)
    pts = np.asarray(tv.vfr_pts()) / 1000
    assert len(frames) == video.info.n_frames == len(pts)
    np.testing.assert_allclose(video.times, tv.stream_times(files["vfr.mkv"]), atol=1e-6)
    np.testing.assert_allclose(video.times, pts, atol=1 / 30)  # the encoder's clock rounds the written times
    assert video.probe.variable_rate and video.probe.stated_fps == 30
    assert video.info.fps == pytest.approx(len(pts) / video.info.duration_s)
    np.testing.assert_allclose(means(frames), [tv.level(i) for i in range(len(pts))], atol=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_declared_fps_passes_with_timestamp_times(files, backend):
    video, frames = decode(files["wrong_fps.mkv"], backend)
    assert video.problems == [] and len(frames) == 30
    assert video.probe.stated_fps == 30 and video.info.fps == pytest.approx(2.5)
    np.testing.assert_allclose(video.times, np.arange(30) * 0.4, atol=1e-6)
    assert video.info.duration_s == pytest.approx(12.0)


def test_target_fps_resamples_by_time(files):
    # 2.5 fps frames resampled to 5 fps: each frame twice (ties go to the later frame).
    with open_video(files["wrong_fps.mkv"], "pyav", target_fps=5) as video:
        np.testing.assert_array_equal(video.source_indices[:6], [0, 1, 1, 2, 2, 3])
        assert video.info.fps == 5
    times = np.asarray(tv.vfr_pts()) / 1000
    idx = resample_times(times, 10)
    t = np.arange(len(idx)) / 10
    assert np.all(np.abs(times[idx] - t) <= np.diff(times).max() / 2 + 1e-9)  # the nearest frame each time


def test_integrity_off_and_tolerance(files):
    cut = files["cut90_clean.avi"]
    probe = probe_stream(str(cut))
    missing = probe.declared_frames - probe.n_packets
    assert missing >= 1
    assert integrity_problems(probe, tolerance=missing + 1) == []
    assert integrity_problems(probe, tolerance=0)
    with open_video(cut, "pyav", integrity="off") as video:
        assert video.problems == [] and sum(len(c) for c in video.chunks()) == probe.n_frames
    with pytest.raises(VadmilError, match="unknown integrity 'lenient'"):
        open_video(cut, "pyav", integrity="lenient")

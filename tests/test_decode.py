"""Video decoding backends, frame-rate resampling, snippet indices and the sequential snippet assembler."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from vadmil.data.geometry import TAIL_POLICIES, SnippetGeometry
from vadmil.errors import VadmilError
from vadmil.extract import SnippetAssembler, open_video, resample_indices, snippet_frame_indices

ROOT = Path(__file__).resolve().parents[1]
VTEST = ROOT.parent / "shared" / "videos" / "vtest.avi"
needs_vtest = pytest.mark.skipif(not VTEST.is_file(), reason=f"real test video {VTEST} is absent")
HAS_CV2 = importlib.util.find_spec("cv2") is not None
BACKENDS = [
    "decord",
    "pyav",
    pytest.param(
        "opencv", marks=pytest.mark.skipif(not HAS_CV2, reason="opencv-python-headless not installed")
    ),
]

N_GEN, W_GEN, H_GEN, FPS_GEN = 37, 64, 48, 10


def level(i: int) -> int:
    """Brightness that encodes frame index ``i`` in the generated videos."""
    return 10 + 6 * i


def write_video(path: Path, codec: str, n: int = N_GEN, options: dict | None = None) -> Path:
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=FPS_GEN)
        stream.width, stream.height, stream.pix_fmt = W_GEN, H_GEN, "yuv420p"
        stream.bit_rate = 2_000_000  # high quality: frame means stay within 3 of the encoded level
        out.start_encoding()
        for i in range(n):
            # A little noise keeps the encoder from producing near-empty packets.
            noise = rng.integers(-4, 5, (H_GEN, W_GEN, 3))
            frame = np.clip(level(i) + noise, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Small generated videos: name -> path (MPEG-4 in AVI and MP4; H.264 in MKV when libx264 is there)."""
    av = pytest.importorskip("av")
    root = tmp_path_factory.mktemp("videos")
    out = {
        "mpeg4.avi": write_video(root / "mpeg4.avi", "mpeg4"),
        "mpeg4.mp4": write_video(root / "mpeg4.mp4", "mpeg4"),
    }
    if "libx264" in av.codecs_available:
        out["h264.mkv"] = write_video(root / "h264.mkv", "libx264")  # MKV: PyAV's stream.frames is 0
        out["h264_faststart.mp4"] = write_video(
            root / "h264_faststart.mp4", "libx264", options={"movflags": "faststart"}
        )
    return out


def decode_all(path, backend, **kwargs) -> tuple[object, np.ndarray]:
    with open_video(path, backend, **kwargs) as video:
        frames = np.concatenate(list(video.chunks(chunk_frames=10)))
        return video.info, frames


def assert_error_names(exc_info, path) -> None:
    message = str(exc_info.value)
    assert str(path) in message and "\n" not in message


# ---------------------------------------------------------------- vtest.avi


@functools.cache
def vtest_summary(backend: str) -> dict:
    """Decode vtest.avi once per backend: info, frame count, first/last frames, snippet counts per tail policy."""
    with open_video(VTEST, backend) as video:
        assemblers = {
            p: SnippetAssembler(SnippetGeometry(16, 16, p), video.info.n_frames) for p in TAIL_POLICIES
        }
        counts = dict.fromkeys(TAIL_POLICIES, 0)
        n, first, last = 0, None, None
        for chunk in video.chunks():
            first = chunk[0].copy() if first is None else first
            last = chunk[-1].copy()
            n += len(chunk)
            for policy, asm in assemblers.items():
                for snippet in asm.feed(chunk):
                    assert snippet.shape == (16, 576, 768, 3)
                    counts[policy] += 1
        for asm in assemblers.values():
            list(asm.finish())
        return {"info": video.info, "decoded": n, "first": first, "last": last, "snippets": counts}


@needs_vtest
@pytest.mark.parametrize("backend", BACKENDS)
def test_vtest_info_frames_and_snippets(backend):
    s = vtest_summary(backend)
    info = s["info"]
    assert (info.n_frames, info.fps, info.width, info.height) == (795, 10.0, 768, 576)
    assert s["decoded"] == 795
    assert s["snippets"] == {"drop": 49, "pad_last": 50, "loop": 50}


@needs_vtest
@pytest.mark.parametrize("backend", [b for b in ("pyav", "opencv") if b != "opencv" or HAS_CV2])
def test_vtest_backends_agree_with_decord(backend):
    ref, other = vtest_summary("decord"), vtest_summary(backend)
    assert other["decoded"] == ref["decoded"]
    for which in ("first", "last"):
        diff = np.abs(ref[which].astype(np.int16) - other[which].astype(np.int16)).mean()
        assert diff < 3.0, f"{which} frame differs by {diff:.2f} on average between decord and {backend}"


@needs_vtest
def test_vtest_truncated_half_is_damaged_and_warn_keeps_its_399_frames(tmp_path):
    half = tmp_path / "vtest_half.avi"
    data = VTEST.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    counts = {}
    for backend in ["decord", "pyav"] + (["opencv"] if HAS_CV2 else []):
        with pytest.raises(VadmilError, match="declares 795 frames but only 399 are in the file"):
            open_video(half, backend)
        with open_video(half, backend, integrity="warn") as video:
            decoded = sum(len(c) for c in video.chunks())
            assert decoded == video.info.n_frames and video.problems
            counts[backend] = decoded
    assert set(counts.values()) == {399}, counts


# ---------------------------------------------------------------- generated videos


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_exact_count_and_order(videos, backend):
    for name, path in videos.items():
        info, frames = decode_all(path, backend)
        assert (info.n_frames, info.fps, info.width, info.height) == (N_GEN, FPS_GEN, W_GEN, H_GEN), name
        assert frames.shape == (N_GEN, H_GEN, W_GEN, 3) and frames.dtype == np.uint8
        means = frames.reshape(N_GEN, -1).mean(1)
        assert np.all(np.diff(means) > 0), f"{name}: frames out of order"
        np.testing.assert_allclose(means, [level(i) for i in range(N_GEN)], atol=3, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunk_sizes_and_reiteration(videos, backend):
    with open_video(videos["mpeg4.avi"], backend) as video:
        sizes = [len(c) for c in video.chunks(chunk_frames=10)]
        assert sizes == [10, 10, 10, 7]
        again = np.concatenate(list(video.chunks(chunk_frames=64)))
        assert len(again) == N_GEN
    with pytest.raises(VadmilError):
        next(video.chunks())  # closed


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_fps_halves_by_frame_selection(videos, backend):
    path = videos["mpeg4.avi"]
    _, full = decode_all(path, backend)
    with open_video(path, backend, target_fps=FPS_GEN / 2) as video:
        assert video.info.n_frames == 19 and video.info.fps == FPS_GEN / 2
        assert video.source_info.n_frames == N_GEN
        np.testing.assert_array_equal(video.source_indices, np.arange(0, N_GEN, 2))
        half = np.concatenate(list(video.chunks(chunk_frames=4)))
    np.testing.assert_array_equal(half, full[::2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_side_resize(videos, backend):
    info, frames = decode_all(videos["mpeg4.avi"], backend, resize=(24, 32))
    assert (info.height, info.width) == (24, 32) and frames.shape == (N_GEN, 24, 32, 3)
    np.testing.assert_allclose(frames.reshape(N_GEN, -1).mean(1), [level(i) for i in range(N_GEN)], atol=3)


def test_resample_indices_nearest_half_up():
    np.testing.assert_array_equal(resample_indices(10, 25, 10), [0, 3, 5, 8])  # 2.5 -> 3, 7.5 -> 8
    np.testing.assert_array_equal(resample_indices(5, 10, 10), np.arange(5))
    np.testing.assert_array_equal(resample_indices(3, 10, 20), [0, 1, 1, 2, 2])  # upsampling repeats frames
    assert len(resample_indices(9000, 30000 / 1001, 10)) == 3003


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_generated_video_is_an_error_or_a_shorter_video(videos, backend):
    # Strict: always a VadmilError naming the file. Warn: an error, or a prefix whose count is exact.
    for name, path in videos.items():
        cut = path.with_name("cut_" + name)
        data = path.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(VadmilError) as exc:
            decode_all(cut, backend)
        assert str(cut) in str(exc.value) and "\n" not in str(exc.value)
        try:
            info, frames = decode_all(cut, backend, integrity="warn")
        except VadmilError as exc:
            assert str(cut) in str(exc) and "\n" not in str(exc)
            continue
        assert 0 < info.n_frames < N_GEN and len(frames) == info.n_frames, name
        means = frames.reshape(len(frames), -1).mean(1)
        np.testing.assert_allclose(means, [level(i) for i in range(len(frames))], atol=3, err_msg=name)


def test_truncated_mkv_counts_agree(videos):
    if "h264.mkv" not in videos:
        pytest.skip("libx264 encoder not available in this PyAV build")
    path = videos["h264.mkv"]
    cut = path.with_name("half_h264.mkv")
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    counts = {
        b: decode_all(cut, b, integrity="warn")[0].n_frames
        for b in ["decord", "pyav"] + (["opencv"] if HAS_CV2 else [])
    }
    assert len(set(counts.values())) == 1 and 0 < counts["pyav"] < N_GEN, counts


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_cases(tmp_path, backend):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(VadmilError, match="not found") as e:
        open_video(missing, backend)
    assert_error_names(e, missing)

    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for bad in (text, junk, tmp_path):
        with pytest.raises(VadmilError) as e:
            with open_video(bad, backend) as video:
                list(video.chunks())
        assert_error_names(e, bad)

    empty = write_video(tmp_path / "empty.avi", "mpeg4", n=0)
    with pytest.raises(VadmilError) as e:
        open_video(empty, backend)
    assert_error_names(e, empty)
    if backend != "decord":  # decord cannot open a frameless AVI at all, so it cannot say why
        assert "no video frames" in str(e.value)


def test_unknown_backend_and_bad_arguments(tmp_path):
    with pytest.raises(VadmilError, match="unknown video backend 'ffmpeg'.*decord, pyav, opencv"):
        open_video(tmp_path / "x.mp4", backend="ffmpeg")
    path = write_video(tmp_path / "ok.avi", "mpeg4", n=3)
    with pytest.raises(VadmilError, match="target_fps"):
        open_video(path, target_fps=0)
    with pytest.raises(VadmilError, match="resize"):
        open_video(path, resize=(0, 10))


@pytest.mark.parametrize(("backend", "install"), [("opencv", "opencv-python-headless"), ("pyav", "av")])
def test_missing_backend_library(tmp_path, monkeypatch, backend, install):
    path = tmp_path / "x.avi"
    path.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, {"opencv": "cv2", "pyav": "av"}[backend], None)  # import fails
    with pytest.raises(VadmilError, match=f"backend {backend} needs `pip install {install}`"):
        open_video(path, backend)


# ---------------------------------------------------------------- snippets


def test_snippet_frame_indices_tail_policies():
    drop = snippet_frame_indices(795, SnippetGeometry(16, 16, "drop"))
    pad = snippet_frame_indices(795, SnippetGeometry(16, 16, "pad_last"))
    loop = snippet_frame_indices(795, SnippetGeometry(16, 16, "loop"))
    assert drop.shape == (49, 16) and pad.shape == loop.shape == (50, 16)
    np.testing.assert_array_equal(drop[3], np.arange(48, 64))
    np.testing.assert_array_equal(pad[-1], [*range(784, 795), 794, 794, 794, 794, 794])
    np.testing.assert_array_equal(loop[-1], [*range(784, 795), 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(snippet_frame_indices(5, SnippetGeometry(4, 4, "loop"))[-1], [4, 0, 1, 2])
    np.testing.assert_array_equal(
        snippet_frame_indices(3, SnippetGeometry(8, 8, "loop"))[0], [0, 1, 2] * 2 + [0, 1]
    )
    assert snippet_frame_indices(3, SnippetGeometry(8, 8, "drop")).shape == (0, 8)
    for n in range(0, 60):
        for length, stride in [(16, 16), (8, 5), (5, 8), (1, 1), (4, 12)]:
            for policy in TAIL_POLICIES:
                g = SnippetGeometry(length, stride, policy)
                idx = snippet_frame_indices(n, g)
                assert idx.shape == (g.n_snippets(n), length)
                if len(idx):
                    assert idx.min() >= 0 and idx.max() < n
                    np.testing.assert_array_equal(idx[:, 0], np.arange(len(idx)) * stride)


@pytest.mark.parametrize("policy", TAIL_POLICIES)
@pytest.mark.parametrize(("length", "stride"), [(16, 16), (8, 5), (5, 8), (4, 12), (3, 1)])
def test_assembler_matches_indexing(policy, length, stride):
    g = SnippetGeometry(length, stride, policy)
    for n in (1, 3, 7, 16, 37, 50):
        frames = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 3, 3)).copy()
        expected = frames[snippet_frame_indices(n, g)]
        for chunk in (1, 3, 7, 64):
            asm = SnippetAssembler(g, n)
            got = []
            for start in range(0, n, chunk):
                got += list(asm.feed(frames[start : start + chunk]))
                assert asm.buffered_frames <= (length - 1) + (length if policy == "loop" else 0)
            got += list(asm.finish())
            assert len(got) == len(expected) == g.n_snippets(n)
            if got:
                np.testing.assert_array_equal(np.stack(got), expected, err_msg=f"n={n} chunk={chunk}")


@pytest.mark.parametrize("policy", TAIL_POLICIES)
def test_assembler_on_decoded_video(videos, policy):
    path = videos["mpeg4.avi"]
    _, full = decode_all(path, "decord")
    for g in (SnippetGeometry(16, 16, policy), SnippetGeometry(8, 5, policy)):
        with open_video(path, "decord") as video:
            got = np.stack(list(SnippetAssembler(g, video.info.n_frames).run(video.chunks(chunk_frames=6))))
        np.testing.assert_array_equal(got, full[snippet_frame_indices(N_GEN, g)])


def test_assembler_frame_count_mismatch():
    g = SnippetGeometry(4, 4, "pad_last")
    frames = np.zeros((10, 2, 2, 3), np.uint8)
    asm = SnippetAssembler(g, 12)
    list(asm.feed(frames))
    with pytest.raises(VadmilError, match="yielded 10 frames"):
        list(asm.finish())
    with pytest.raises(VadmilError, match="more than the 8 frames"):
        list(SnippetAssembler(g, 8).push(frames))  # push is feed's alias

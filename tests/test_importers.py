"""Format readers of `vadmil import`: synthetic files in each public layout (docs/methods.md §8)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vadmil.data.importers import (
    TENCROP_ORDER,
    WU_ORDER,
    NpyReader,
    RTFMReader,
    SultaniReader,
    VideoFiles,
    WuReader,
)
from vadmil.errors import VadmilError

RNG = np.random.default_rng(0)


def _arr(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return arr


def _load_all(reader):
    return {v.video_id: reader.load(v) for v in reader.plan()}


def _raises(fragment):
    """pytest.raises(VadmilError) whose message contains ``fragment`` literally (usually a file name)."""
    return pytest.raises(VadmilError, match=re.escape(str(fragment)))


# --- RTFM / npy -------------------------------------------------------------------------------------------------


def test_rtfm_folder_round_trip(tmp_path):
    a = _save(tmp_path / "Abuse028_x264_i3d.npy", _arr(7, 10, 8))
    b = _save(tmp_path / "Normal_Videos_003_x264_i3d.npy", _arr(3, 10, 8))
    reader = RTFMReader(str(tmp_path))
    plan = reader.plan()
    assert [v.video_id for v in plan] == ["Abuse028_x264", "Normal_Videos_003_x264"]
    assert reader.crop_order == list(TENCROP_ORDER) and reader.crop_order[4] == "center"
    assert (reader.n_crops, reader.feature_dim, reader.pooled, reader.format) == (10, 8, False, "rtfm")
    got = {v.video_id: reader.load(v) for v in plan}
    for vid, ref in [("Abuse028_x264", a), ("Normal_Videos_003_x264", b)]:
        assert got[vid].features.dtype == np.float32 and np.array_equal(got[vid].features, ref)
        assert got[vid].extra == {}
    assert got["Abuse028_x264"].source == str(tmp_path / "Abuse028_x264_i3d.npy")


def test_rtfm_crop_orders(tmp_path):
    _save(tmp_path / "five" / "v_i3d.npy", _arr(4, 5, 6))
    _save(tmp_path / "flat" / "v_i3d.npy", _arr(4, 6))
    _save(tmp_path / "three" / "v_i3d.npy", _arr(4, 3, 6))
    five, flat, three = (RTFMReader(tmp_path / d) for d in ("five", "flat", "three"))
    five.plan(), three.plan()
    assert five.crop_order == list(TENCROP_ORDER[:5])
    assert three.crop_order == ["crop0", "crop1", "crop2"]
    video = flat.load(flat.plan()[0])
    assert flat.crop_order == ["crop0"] and video.features.shape == (4, 1, 6)


def test_npy_converts_ints_and_float64(tmp_path):
    ints = _save(tmp_path / "a.npy", np.arange(12, dtype=np.int64).reshape(3, 2, 2))
    wide = _save(tmp_path / "b.npy", _arr(2, 2, 2, dtype=np.float64))
    reader = NpyReader(tmp_path)
    got = _load_all(reader)
    assert reader.crop_order == ["crop0", "crop1"]
    assert got["a"].features.dtype == np.float32 and np.array_equal(got["a"].features, ints)
    assert np.array_equal(got["b"].features, wide.astype(np.float32))


def test_plan_reads_one_header_only(tmp_path, monkeypatch):
    for i in range(4):
        _save(tmp_path / f"v{i}_i3d.npy", _arr(3, 10, 4))
    calls, real = [], np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: calls.append(k.get("mmap_mode")) or real(*a, **k))
    assert len(RTFMReader(tmp_path).plan()) == 4
    assert calls == ["r"]  # one memory-mapped peek for C and D, no data read


# --- input resolution -----------------------------------------------------------------------------------------


def test_list_file_relative_paths(tmp_path):
    a = _save(tmp_path / "feats" / "a_i3d.npy", _arr(2, 10, 4))
    _save(tmp_path / "feats" / "unlisted_i3d.npy", _arr(2, 10, 4))
    lst = tmp_path / "train.list"
    lst.write_text("feats/a_i3d.npy\n\n  \n")
    got = _load_all(RTFMReader(lst))
    assert list(got) == ["a"] and np.array_equal(got["a"].features, a)


def test_list_file_with_root(tmp_path):
    a = _save(tmp_path / "here" / "a_i3d.npy", _arr(2, 10, 4))
    b = _save(tmp_path / "here" / "b_i3d.npy", _arr(2, 10, 4))
    lst = tmp_path / "list.txt"
    lst.write_text("/home/author/data/UCF/a_i3d.npy\nC:\\Users\\author\\b_i3d.npy\n")
    with _raises("pass root="):
        RTFMReader(lst).plan()
    got = _load_all(RTFMReader(lst, root=str(tmp_path / "here")))
    assert np.array_equal(got["a"].features, a) and np.array_equal(got["b"].features, b)


def test_folder_recursive_and_single_file(tmp_path):
    a = _save(tmp_path / "Abuse" / "a_i3d.npy", _arr(2, 10, 4))
    _save(tmp_path / "Normal" / "b_i3d.npy", _arr(2, 10, 4))
    with _raises("recursive=true"):
        RTFMReader(tmp_path).plan()
    assert [v.video_id for v in RTFMReader(tmp_path, recursive=True).plan()] == ["a", "b"]
    single = RTFMReader(tmp_path / "Abuse" / "a_i3d.npy")
    assert np.array_equal(_load_all(single)["a"].features, a)


def test_input_errors(tmp_path):
    with _raises(tmp_path / "nope"):
        RTFMReader(tmp_path / "nope").plan()
    (tmp_path / "empty").mkdir()
    with _raises(f"no *.npy files in {tmp_path / 'empty'}"):
        RTFMReader(tmp_path / "empty").plan()
    (tmp_path / "empty.txt").write_text("\n\n")
    with _raises(f"no *.npy files in {tmp_path / 'empty.txt'}"):
        RTFMReader(tmp_path / "empty.txt").plan()
    (tmp_path / "missing.txt").write_text("x_i3d.npy\n")
    with _raises(tmp_path / "x_i3d.npy"):
        RTFMReader(tmp_path / "missing.txt").plan()
    (tmp_path / "bin.list").write_bytes(b"\xff\xfe\x00\x80")
    with _raises("bin.list"):
        RTFMReader(tmp_path / "bin.list").plan()


def test_duplicate_ids(tmp_path):
    _save(tmp_path / "d" / "a_i3d.npy", _arr(2, 10, 4))
    _save(tmp_path / "d" / "a.npy", _arr(2, 10, 4))
    with _raises("a_i3d.npy"):
        RTFMReader(tmp_path / "d").plan()
    lst = tmp_path / "twice.txt"
    lst.write_text("d/a_i3d.npy\nd/a_i3d.npy\n")
    with _raises("duplicate video id"):
        RTFMReader(lst).plan()


# --- load checks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("text.npy", b"not numpy at all", "not a readable .npy"),
        ("empty.npy", b"", "not a readable .npy"),
        ("pickle.npy", np.array([{"a": 1}], dtype=object), "not a readable .npy"),
        ("archive.npy", "npz", ".npz archive"),
        ("flat.npy", np.zeros(5, np.float32), "expected [T, D] or [T, C, D]"),
        ("deep.npy", np.zeros((2, 2, 2, 2), np.float32), "expected [T, D] or [T, C, D]"),
        ("nothing.npy", np.zeros((0, 10, 4), np.float32), "is empty"),
        ("bools.npy", np.ones((2, 4), bool), "not real numbers"),
        ("complex.npy", np.ones((2, 4), np.complex64), "not real numbers"),
    ],
)
def test_bad_feature_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        with open(path, "wb") as f:
            np.savez(f, x=np.zeros((2, 4)))
    else:
        np.save(path, content, allow_pickle=True)
    # plan() catches it on the first file's header; load() on any file, even without a plan
    for call in (lambda r: r.plan(), lambda r: r.load(VideoFiles("x", (path,)))):
        with pytest.raises(VadmilError, match=re.escape(str(path))) as err:
            call(NpyReader(path))
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_non_finite_counts_snippets(tmp_path):
    arr = _arr(6, 10, 4)
    arr[1, 3, 0], arr[4, :, 2] = np.nan, np.inf
    _save(tmp_path / "v_i3d.npy", arr)
    reader = RTFMReader(tmp_path)
    with _raises("v_i3d.npy has NaN/Inf values in 2 of 6 snippets (first: snippet 1)"):
        reader.load(reader.plan()[0])
    _save(tmp_path / "v_i3d.npy", np.full((2, 10, 4), 1e300))  # overflows float32
    with _raises("NaN/Inf values in 2 of 2"):
        reader.load(reader.plan()[0])


@pytest.mark.parametrize("shape, what", [((3, 10, 5), "feature size D 5"), ((3, 5, 4), "crop count C 5")])
def test_dims_must_match_first_video(tmp_path, shape, what):
    _save(tmp_path / "a_i3d.npy", _arr(3, 10, 4))
    _save(tmp_path / "b_i3d.npy", _arr(*shape))
    reader = RTFMReader(tmp_path)
    a, b = reader.plan()
    reader.load(a)
    with _raises(f"b_i3d.npy has {what} but {tmp_path / 'a_i3d.npy'} has"):
        reader.load(b)


# --- Wu -----------------------------------------------------------------------------------------------------------


def _wu(folder, vid, n, t=5, d=6, audio=False):
    crops = [_save(folder / f"{vid}__{c}.npy", _arr(t, d)) for c in range(n)]
    vggish = _save(folder / f"{vid}__vggish.npy", _arr(t + 1, 128)) if audio else None
    return crops, vggish


def test_wu_stacks_crops_in_file_order_with_audio(tmp_path):
    crops, vggish = _wu(tmp_path, "Abuse028_x264", 10, audio=True)
    _wu(tmp_path, "v", 10)
    reader = WuReader(str(tmp_path))
    plan = reader.plan()
    assert [v.video_id for v in plan] == ["Abuse028_x264", "v"]
    assert plan[0].features[3].name == "Abuse028_x264__3.npy" and plan[1].audio is None
    assert reader.crop_order == list(WU_ORDER) and reader.crop_order[0] == "center"
    got = reader.load(plan[0])
    assert got.features.shape == (5, 10, 6) and got.features.dtype == np.float32
    for c in range(10):
        assert np.array_equal(got.features[:, c], crops[c])
    assert np.array_equal(got.extra["audio"], vggish) and got.extra["audio"].dtype == np.float32
    assert got.source.count(";") == 10 and got.source.endswith("Abuse028_x264__vggish.npy")
    assert reader.load(plan[1]).extra == {}


def test_wu_xd_five_crops_from_list(tmp_path):
    vid = "v=abc__#1_label_A"  # XD names carry dots, '=' and '#'
    crops, _ = _wu(tmp_path / "feats", vid, 5, audio=True)
    lst = tmp_path / "xd.list"
    lst.write_text("".join(f"feats/{vid}__{c}.npy\n" for c in range(5)) + f"feats/{vid}__vggish.npy\n")
    reader = WuReader(lst, n_crops=5, audio=False)  # audio=False ignores the listed vggish file
    (video,) = reader.plan()
    assert video.video_id == vid and video.audio is None and reader.crop_order == list(WU_ORDER[:5])
    got = reader.load(video)
    assert got.extra == {} and np.array_equal(got.features[:, 4], crops[4])


def test_wu_layout_errors(tmp_path):
    _wu(tmp_path / "missing", "v", 9)
    with pytest.raises(VadmilError, match=r"video v .* missing crops \[9\];"):
        WuReader(tmp_path / "missing").plan()
    _wu(tmp_path / "extra", "v", 11)
    with pytest.raises(VadmilError, match=r"video v .* has extra crops \[10\];"):
        WuReader(tmp_path / "extra").plan()
    _save(tmp_path / "orphan" / "w__vggish.npy", _arr(3, 128))
    _wu(tmp_path / "orphan", "v", 10)
    with _raises("w__vggish.npy has no crop files"):
        WuReader(tmp_path / "orphan").plan()
    _wu(tmp_path / "named", "v", 10)
    _save(tmp_path / "named" / "v__flow.npy", _arr(3, 4))
    with _raises("v__flow.npy is not named"):
        WuReader(tmp_path / "named").plan()
    _wu(tmp_path / "dup", "v", 10)
    _save(tmp_path / "dup" / "v__03.npy", _arr(3, 4))
    with _raises("v__03.npy"):
        WuReader(tmp_path / "dup").plan()
    with _raises("no *__*.npy files"):
        WuReader(tmp_path / "orphan" / "..").plan()


def test_wu_load_errors(tmp_path):
    _wu(tmp_path, "v", 10)
    _save(tmp_path / "v__7.npy", _arr(4, 6))
    reader = WuReader(tmp_path)
    with _raises(f"v__7.npy has T=4 snippets but {tmp_path / 'v__0.npy'} has T=5"):
        reader.load(reader.plan()[0])
    _save(tmp_path / "v__7.npy", _arr(5, 1, 6))
    with _raises("v__7.npy has shape [5, 1, 6]; expected [T, D]"):
        reader.load(reader.plan()[0])
    _save(tmp_path / "v__7.npy", _arr(5, 6))
    _save(tmp_path / "v__vggish.npy", np.full((3, 128), np.nan, np.float32))
    with _raises("v__vggish.npy has NaN/Inf values in 3 of 3"):
        reader.load(reader.plan()[0])


# --- Sultani --------------------------------------------------------------------------------------------------


def test_sultani_round_trip(tmp_path):
    ref = _arr(32, 4096)
    np.savetxt(tmp_path / "Abuse028_x264_C.txt", ref, fmt="%.9g")  # 9 digits round-trip float32
    reader = SultaniReader(tmp_path)
    (video,) = reader.plan()
    got = reader.load(video)
    assert video.video_id == "Abuse028_x264" and reader.pooled and reader.crop_order == ["center"]
    assert got.features.shape == (32, 1, 4096) and got.features.dtype == np.float32
    assert np.array_equal(got.features[:, 0], ref)
    assert reader.format == "sultani" and reader.feature_dim == 4096


@pytest.mark.parametrize(
    "rows, cols, fragment",
    [
        (31, 4096, "has 31 rows x 4096 values"),
        (32, 4095, "has 32 rows x 4095 values"),
        (0, 0, "has 0 rows x 0 values"),
    ],
)
def test_sultani_shape_errors(tmp_path, rows, cols, fragment):
    path = tmp_path / "v_C.txt"
    np.savetxt(path, np.zeros((rows, cols)), fmt="%g")
    with _raises(f"{path} {fragment}"):
        SultaniReader(path).load(SultaniReader(path).plan()[0])


def test_sultani_non_numeric(tmp_path):
    path = tmp_path / "v_C.txt"
    path.write_text("\n".join(" ".join(["0.5"] * 4095 + ["abc"]) for _ in range(32)))
    with _raises(f"{path} contains a value that is not a number"):
        SultaniReader(tmp_path).load(SultaniReader(tmp_path).plan()[0])

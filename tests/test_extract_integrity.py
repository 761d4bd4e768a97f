"""`vadmil extract` on damaged and unusual files: nothing damaged is ever stored as complete; what the store records."""

from __future__ import annotations

import json

import pytest

from tests import videos as tv
from tests.test_extract import extract_cfg
from vadmil.data.store import FeatureStore
from vadmil.extract.jobs import extract


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    clean = tv.encode(root / "clean.avi", "mpeg4", n=40)
    tv.zero_middle(clean, root / "zeroed.avi")
    tv.cut(clean, root / "cut.avi", 0.9)
    tv.encode(root / "short.avi", "mpeg4", n=9)
    tv.wrong_fps(root / "wrong_fps.mkv", n=20)
    mp4 = tv.encode(root / "src.mp4", "mpeg4", n=40)
    tv.zero_middle(mp4, root / "zeroed_mp4.mp4")  # the index is intact: found only when decoding ends
    mp4.unlink()
    return root


def failures_of(out):
    return json.loads(out.with_name(out.name + ".failures.json").read_text())


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("tail_policy", ["drop", "pad_last", "loop"])
def test_strict_stores_only_whole_files(folder, tmp_path, backend, tail_policy):
    out = tmp_path / "s.h5"
    result = extract(extract_cfg(f"input={folder}", f"output={out}", f"decoder.backend={backend}",
                                 f"tail_policy={tail_policy}"))  # fmt: skip
    with FeatureStore(out) as store:
        assert store.ids() == ["clean", "wrong_fps"]
        assert store.ids(complete_only=False) == ["clean", "wrong_fps"]
        info = store.info("wrong_fps")
        assert (info["n_frames"], info["fps"], info["stated_fps"]) == (20, pytest.approx(2.5), 30.0)
        assert (info["duration_s"], info["time_source"], info["integrity"]) == (
            pytest.approx(8.0),
            "timestamps",
            "ok",
        )
        assert store.info("clean")["duration_s"] == pytest.approx(4.0)
    failed = {k.rsplit("/", 1)[-1]: v for k, v in result["failed"].items()}
    assert failed.keys() == {"zeroed.avi", "cut.avi", "short.avi", "zeroed_mp4.mp4"}
    assert "declares 40 frames but only" in failed["zeroed.avi"] and "declares 40 frames" in failed["cut.avi"]
    assert (
        "fewer than one 16-frame snippet" in failed["short.avi"] and "allow_short=true" in failed["short.avi"]
    )
    assert failures_of(out).keys() == result["failed"].keys()


def test_warn_keeps_what_is_there_and_records_the_problem(folder, tmp_path):
    out = tmp_path / "s.h5"
    result = extract(extract_cfg(f"input={folder}", f"output={out}", "integrity=warn", "allow_short=true"))
    with FeatureStore(out) as store:
        assert {"zeroed", "cut", "short", "clean"} <= set(store.ids())
        assert "declares 40 frames" in store.info("zeroed")["integrity"]
        assert store.info("clean")["integrity"] == "ok"
        assert store.n_snippets("short") == 1 and store.n_frames("short") == 9
        assert store.validate() == []
    # A decoder that yields fewer frames than the packets is a failure in every mode: the MP4's zeroed packets.
    assert [k for k in result["failed"]] == [str(folder / "zeroed_mp4.mp4")]


def test_allow_short_cannot_keep_a_short_video_with_drop(folder, tmp_path):
    out = tmp_path / "s.h5"
    result = extract(extract_cfg(f"input={folder / 'short.avi'}", f"output={out}", "allow_short=true",
                                 "tail_policy=drop"))  # fmt: skip
    assert "tail_policy=drop keeps no partial snippet" in next(iter(result["failed"].values()))

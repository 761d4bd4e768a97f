"""The audio stream of `vadmil extract streams=[rgb,audio]`: PyAV decoding, VGGish's log-mel (checked against an
independent computation on a synthesised tone), snippet alignment, the VGGish network, videos without sound."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from vadmil.backbones.vggish import VGGishBackbone, VGGishNet
from vadmil.commands.base import config_dir
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.store import FeatureStore
from vadmil.errors import VadmilError
from vadmil.extract.audio import decode_audio, log_mel, snippet_centres, snippet_patches
from vadmil.extract.jobs import extract

av = pytest.importorskip("av")
TINY_NET = ["audio.net.random_init=true", "audio.net.width=0.0625"]


def write_av(path: Path, wave: np.ndarray | None, rate: int = 16000, codec: str = "pcm_s16le",
             n_frames: int = 40, fps: int = 10) -> Path:  # fmt: skip
    """A tiny video (grey frames) with ``wave`` (mono, [-1, 1]) as its soundtrack, or none."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(codec, rate=rate, layout="mono") if wave is not None else None
        rng = np.random.default_rng(0)
        for i in range(n_frames):
            img = np.clip(60 + 3 * i + rng.integers(-4, 5, (48, 64, 3)), 0, 255).astype(np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode())
        if audio is not None:
            pcm = codec.startswith("pcm")
            for s in range(0, len(wave), 1024):
                chunk = wave[s : s + 1024]
                data = (chunk * 32767).astype(np.int16) if pcm else chunk.astype(np.float32)
                frame = av.AudioFrame.from_ndarray(
                    data[None], format="s16" if pcm else audio.format.name, layout="mono"
                )
                frame.sample_rate, frame.pts = rate, s
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def tone(hz: float, seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """VGGish's log-mel written out plainly, loop by loop (numpy, float64): the independent computation."""
    n_window, hop, n_fft, bands = 400, 160, 512, 64
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / n_window) for n in range(n_window)])  # periodic
    mel = lambda hz: 1127.0 * math.log(1.0 + hz / 700.0)  # noqa: E731  (HTK)
    edges = [mel(125) + (mel(7500) - mel(125)) * i / (bands + 1) for i in range(bands + 2)]
    bins = [mel(8000.0 * k / (n_fft // 2)) for k in range(n_fft // 2 + 1)]
    weights = np.zeros((n_fft // 2 + 1, bands))
    for k in range(1, n_fft // 2 + 1):  # bin 0 (DC) gets no weight
        for b in range(bands):
            lo, mid, hi = edges[b : b + 3]
            weights[k, b] = max(0.0, min((bins[k] - lo) / (mid - lo), (hi - bins[k]) / (hi - mid)))
    rows = []
    for start in range(0, len(wave) - n_window + 1, hop):
        spectrum = np.abs(np.fft.rfft(wave[start : start + n_window] * hann, n_fft))
        rows.append(np.log(spectrum @ weights + 0.01))
    return np.array(rows)


def test_decode_and_log_mel_match_an_independent_computation_on_a_tone(tmp_path):
    wave = tone(1000, 1.5, 16000)
    decoded = decode_audio(write_av(tmp_path / "tone.mkv", wave))  # lossless PCM: only int16 rounding
    assert decoded.shape == wave.shape and np.abs(decoded - wave).max() < 1e-4
    ours, ref = log_mel(decoded), reference_log_mel(decoded.astype(np.float64))
    assert ours.shape == ref.shape == (1 + (len(wave) - 400) // 160, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    peak = int(np.median(ours.argmax(axis=1)))  # the band holding 1 kHz (HTK mel centres)
    centres = 700 * (
        np.exp(np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)[1:-1] / 1127) - 1
    )
    assert abs(centres[peak] - 1000) < (centres[peak + 1] - centres[peak - 1]) / 2


def test_other_rates_and_lossy_codecs_are_resampled_to_16k_mono(tmp_path):
    decoded = decode_audio(write_av(tmp_path / "tone.mp4", tone(1000, 1.5, 44100), rate=44100, codec="aac"))
    assert abs(len(decoded) - 1.5 * 16000) < 0.1 * 16000  # (the AAC encoder adds a little priming)
    at16 = log_mel(tone(1000, 1.5, 16000)).argmax(axis=1)
    assert np.median(log_mel(decoded).argmax(axis=1)) == np.median(at16)


def test_patches_are_centred_on_each_snippet_and_silent_outside_the_soundtrack():
    logmel = np.arange(250, dtype=np.float32)[:, None].repeat(64, axis=1)  # frame j holds j; 2.5 s of sound
    centres = snippet_centres(SnippetGeometry(16, 16, "drop"), 3, 16.0)  # (i * 16 + 8) / 16 fps
    np.testing.assert_allclose(centres, [0.5, 1.5, 2.5])
    patches = snippet_patches(logmel, np.array([*centres, 0.2]))
    assert patches.shape == (4, 96, 64)
    # frame j's window is centred at j * 10 ms + 12.5 ms: 1.5 s takes frames 101..196 (centre 148.5 -> 1.4975 s)
    assert patches[1, 0, 0] == 101 and patches[1, -1, 0] == 196
    silence = np.float32(math.log(0.01))
    assert patches[2, 48, 0] == 249 and (patches[2, 49:, 0] == silence).all()  # past the end of the sound
    assert (patches[3, :29, 0] == silence).all() and patches[3, 29, 0] == 0  # before its start


def test_vggish_has_the_published_layout_and_loads_a_local_file_strictly(tmp_path):
    with torch.device("meta"):
        full = VGGishNet(1.0).state_dict()
    shapes = {k: tuple(v.shape) for k, v in full.items()}
    assert shapes["features.0.weight"] == (64, 1, 3, 3) and shapes["features.13.weight"] == (512, 512, 3, 3)
    assert [k for k in shapes if k.endswith("weight")] == [
        f"features.{i}.weight" for i in (0, 3, 6, 8, 11, 13)
    ] + [f"embeddings.{i}.weight" for i in (0, 2, 4)]
    assert shapes["embeddings.0.weight"] == (4096, 512 * 6 * 4) and shapes["embeddings.4.weight"] == (
        128,
        4096,
    )
    tiny = VGGishBackbone(random_init=True, width=0.0625)
    state = {
        **tiny.net.state_dict(),
        "pproc.pca_matrix": torch.eye(128),
    }  # torchvggish files carry the PCA too
    torch.save(state, tmp_path / "vggish.pth")
    loaded = VGGishBackbone(weights=str(tmp_path / "vggish.pth"), width=0.0625)
    assert len(loaded.weights_sha256) == 64 and tiny.weights_sha256 == "random-init"
    x = torch.randn(2, 96, 64)
    torch.testing.assert_close(loaded(x), tiny(x))
    assert loaded(x).shape == (2, 128)
    with pytest.raises(VadmilError, match="does not fit backbone vggish"):
        VGGishBackbone(weights=str(tmp_path / "vggish.pth"), width=0.125)


# ---- `vadmil extract streams=[rgb,audio]` ---------------------------------------------------------------------
def extract_cfg(*overrides: str):
    small = ["backbone=x3d_xs", "backbone.random_init=true", "crop_size=32", "short_side=32", "progress=false",
             "num_workers=0", "snippet_len=8", "snippet_stride=8"]  # fmt: skip
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("extract", [*small, "streams=[rgb,audio]", *TINY_NET, *overrides])


@pytest.fixture(scope="module")
def av_videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("av")
    write_av(folder / "loud.mkv", tone(800, 4.0, 16000))
    write_av(folder / "quiet.mkv", 0.01 * tone(300, 4.0, 16000))
    write_av(folder / "silent.mkv", None)  # no audio track at all
    return folder


def test_extraction_stores_one_audio_embedding_per_snippet_and_records_the_recipe(av_videos, tmp_path):
    out = tmp_path / "av.h5"
    result = extract(extract_cfg(f"input={av_videos}", f"output={out}"))
    assert result["extracted"] == 2
    (failed,) = result["failed"].values()  # audio.missing=error: the silent video fails, naming itself
    assert "silent.mkv has no audio track" in failed and "audio.missing=zeros" in failed
    with FeatureStore(out) as store:
        assert store.ids() == ["loud", "quiet"] and store.extra_streams == {"audio": 128}
        assert "vggish_w0.0625 (weights random-init)" in store.attrs["audio_recipe"]
        for v in store.ids():
            audio = store.read_extra(v, "audio")
            assert audio.shape == (store.n_snippets(v), 128) and np.isfinite(audio).all()
        assert not np.allclose(store.read_extra("loud", "audio"), store.read_extra("quiet", "audio"))


def test_missing_audio_as_zeros_is_recorded_per_video(av_videos, tmp_path):
    out = tmp_path / "zeros.h5"
    result = extract(extract_cfg(f"input={av_videos}", f"output={out}", "audio.missing=zeros"))
    assert result["extracted"] == 3 and not result["failed"]
    with FeatureStore(out) as store:
        assert (store.read_extra("silent", "audio") == 0).all()
        assert store.info("silent")["audio"] == "missing (zeros)" and store.info("loud")["audio"].endswith(
            " s"
        )


def test_a_store_extracted_without_audio_refuses_to_take_audio_videos(av_videos, tmp_path):
    out = tmp_path / "rgb.h5"
    extract(extract_cfg(f"input={av_videos / 'loud.mkv'}", f"output={out}", "streams=[rgb]"))
    with pytest.raises(VadmilError, match="different recipe"):  # extra_streams and audio_recipe differ
        extract(extract_cfg(f"input={av_videos / 'quiet.mkv'}", f"output={out}"))
    with pytest.raises(VadmilError, match=r"streams must be \[rgb\] or \[rgb,audio\]"):
        extract(extract_cfg(f"input={av_videos}", f"output={out}", "streams=[audio]"))


# ---- the demo's soundtrack, and `vadmil score` with both streams -------------------------------------------------
def test_demo_soundtrack_sounds_a_horn_on_wrong_way_events_only():
    from vadmil.demo.soundtrack import RATE, soundtrack

    events = [{"kind": "wrong_way", "start": 25, "end": 49}, {"kind": "appearance", "start": 75, "end": 99}]
    wave = soundtrack(3, 125, 25.0, events)
    assert (
        wave.shape == (5 * RATE,)
        and np.abs(wave).max() <= 1
        and np.array_equal(wave, soundtrack(3, 125, 25.0, events))
    )
    loudness = log_mel(wave).mean(axis=1)  # 10 ms frames
    horn, fire, quiet = loudness[110:190].mean(), loudness[310:390].mean(), loudness[10:90].mean()
    assert horn > quiet + 2 and abs(fire - quiet) < 1


def test_scoring_a_video_with_sound_uses_both_streams_and_gives_one_score_per_frame(tmp_path):
    from tests.inprocess import run_inprocess
    from vadmil.demo.videos import DemoVideoSpec, generate_videos

    spec = DemoVideoSpec(n_train_normal=3, n_train_abnormal=3, n_test_normal=1, n_test_abnormal=1, height=32,
                         width=32, min_frames=60, max_frames=80, sound=True)  # fmt: skip
    videos, manifest = generate_videos(tmp_path / "data", spec, progress=False)
    store = tmp_path / "av.h5"
    small = ["backbone=x3d_xs", "backbone.random_init=true", "crop_size=32", "short_side=32", "num_workers=0"]
    r = run_inprocess("extract", f"input={videos}", f"output={store}", *small, "streams=[rgb,audio]", *TINY_NET,
                      "progress=false", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "run"
    r = run_inprocess(
        "train", "dataset=manifest", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
        "data.streams=[rgb,audio]", "data.fusion=late", "data.standardise=true", "data.batch_size=2",
        "data.val_fraction=0.34", "trainer.max_steps=4", "trainer.enable_progress_bar=false", "oracle.every=0",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "scores"
    r = run_inprocess("score", f"video={videos / 'test_abnormal_000.mp4'}", f"checkpoint={run}", f"output={out}",
                      "progress=false", "plot=false", "num_workers=0", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "test_abnormal_000.json").read_text())
    assert summary["streams"] == ["rgb", "audio"] and "vggish_w0.0625" in summary["recipe"]["audio_recipe"]
    assert (
        len(summary["frames"]["score"])
        == summary["n_frames"]
        == len((out / "test_abnormal_000.csv").read_text().splitlines()) - 1
    )
    stored = np.load(run / "predictions.npz")[
        "snippet_scores/test_abnormal_000"
    ]  # from the store's two streams
    np.testing.assert_allclose(summary["snippet_scores"], stored, atol=2e-6)

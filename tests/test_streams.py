"""Two-stream data (`data.streams`), the alignment rule, fusion (`data.fusion=early|late`) with every head, and a
two-stream store imported from Wu-layout files trained end to end with HL-Net's multimodal configuration."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.inprocess import run_inprocess
from vadmil.commands.base import config_dir
from vadmil.data.geometry import SnippetGeometry
from vadmil.data.recipe import make_recipe
from vadmil.data.store import FeatureStore
from vadmil.data.streams import StreamStore, align, open_streams, stream_dims
from vadmil.errors import VadmilError
from vadmil.heads.fusion import LateFusionHead, LateFusionNormalHead
from vadmil.training.module import MILModule

CONF = Path(config_dir())
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DIMS = {"rgb": 12, "audio": 6}


def _store(path: Path, extra: dict[str, int], videos: dict[str, tuple[np.ndarray, dict]]) -> Path:
    recipe = make_recipe(backbone="test", feature_dim=12, n_crops=2, crop_order=["a", "b"],
                         geometry=SnippetGeometry(16, 16, "drop"), extra_streams=extra)  # fmt: skip
    with FeatureStore.create(path, recipe) as store:
        for vid, (x, streams) in videos.items():
            store.append(vid, x, n_frames=16 * len(x), fps=30.0, extra=streams)
    return path


# ---- alignment ---------------------------------------------------------------------------------------------------
def test_alignment_rule_cuts_longer_repeats_the_last_row_of_shorter_and_refuses_far_apart_streams():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_array_equal(align(x, 5, 1, "v"), x)
    np.testing.assert_array_equal(align(x, 4, 1, "v"), x[:4])
    np.testing.assert_array_equal(
        align(x, 6, 1, "v"), np.concatenate([x, x[-1:]])
    )  # XD-Violence: audio T - 1
    np.testing.assert_array_equal(align(x, 7, 2, "v")[-3:], np.repeat(x[-1:], 3, axis=0))
    with pytest.raises(
        VadmilError, match=r"video 'v' has 5 snippets but the rgb features have 8.*stream_max_gap"
    ):
        align(x, 8, 2, "video 'v'")


def test_streams_are_aligned_broadcast_over_crops_and_concatenated_in_order(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(5, 2, 12)).astype(np.float32)
    audio = rng.normal(size=(4, 6)).astype(np.float32)  # one snippet shorter, as XD-Violence's files
    path = _store(tmp_path / "s.h5", {"audio": 6}, {"v": (rgb, {"audio": audio})})
    with FeatureStore(path) as plain:
        assert open_streams(plain, ["rgb"]) is plain  # single-stream runs read the store unchanged
        both = open_streams(plain, ["rgb", "audio"])
        assert (both.feature_dim, both.n_crops, both.dims) == (18, 2, {"rgb": 12, "audio": 6})
        x = both.read("v")
        assert x.shape == (5, 2, 18)
        np.testing.assert_array_equal(x[..., :12], rgb)
        for c in range(2):  # the same sound with every crop
            np.testing.assert_array_equal(x[:4, c, 12:], audio)
            np.testing.assert_array_equal(x[4, c, 12:], audio[-1])
        audio_only = open_streams(plain, ["audio", "rgb"][:1])
        assert audio_only.read("v").shape == (5, 1, 6) and audio_only.n_crops == 1
        assert (
            both.n_frames("v") == 80 and both.ids() == ["v"] and "v" in both and len(both) == 1
        )  # the store's
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(both)).read("v"), x)  # DataLoader workers


def test_a_store_imported_before_the_audio_stream_was_named_audio_is_read_as_audio(tmp_path):
    audio = np.ones((3, 6), np.float32)
    path = _store(
        tmp_path / "old.h5", {"vggish": 6}, {"v": (np.zeros((3, 2, 12), np.float32), {"vggish": audio})}
    )
    with FeatureStore(path) as store:
        np.testing.assert_array_equal(StreamStore(store, ["rgb", "audio"]).read("v")[:, 0, 12:], audio)


def test_missing_streams_are_clear_errors(tmp_path):
    x = np.zeros((3, 2, 12), np.float32)
    rgb_only = _store(tmp_path / "rgb.h5", {}, {"v": (x, {})})
    with (
        FeatureStore(rgb_only) as store,
        pytest.raises(VadmilError, match=r"stream 'audio' but .* holds only rgb"),
    ):
        open_streams(store, ["rgb", "audio"])
    some = _store(tmp_path / "some.h5", {"audio": 6}, {"v": (x, {}), "w": (x, {"audio": np.zeros((3, 6))})})
    with FeatureStore(some) as store, pytest.raises(VadmilError, match=r"video 'v' .* has no 'audio' stream"):
        open_streams(store, ["rgb", "audio"]).read("v")
    for bad in ([], ["rgb", "rgb"]):
        with pytest.raises(VadmilError, match="data.streams"):
            stream_dims({"feature_dim": 12, "extra_streams": "{}"}, bad)


# ---- fusion with every head -----------------------------------------------------------------------------------
def _cfg(model: str, fusion: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", [f"model={model}", f"data.fusion={fusion}", "data.streams=[rgb,audio]"])


@pytest.mark.parametrize("fusion", ["early", "late"])
@pytest.mark.parametrize("model", MODELS)
def test_each_fusion_mode_takes_a_training_step_with_every_head(model, fusion):
    cfg = _cfg(model, fusion)
    torch.manual_seed(0)
    module = MILModule.from_config(cfg, DIMS)
    d = sum(DIMS.values())
    if fusion == "late":  # a head per stream, each sized from its stream
        assert isinstance(module.head, LateFusionHead | LateFusionNormalHead)
        assert {k: v for k, v in module.head.dims.items()} == DIMS
    b, c, t = 6, 2, 24
    batch = {"x": torch.randn(b, c, t, d), "mask": torch.ones(b, t, dtype=torch.bool),
             "label": torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])}  # fmt: skip
    batch["mask"][0, 3:] = False
    batch["x"][:3, :, 8:12, 12:] += 3.0  # an anomaly heard, not seen
    if cfg.model.get("normal_only"):
        batch["label"] = torch.zeros(b)
    before = {k: v.detach().clone() for k, v in module.head.state_dict().items()}
    if not getattr(module.head, "trainable", True):  # statistics heads (knn, gaussian): fitted per stream
        module.head.fit_normal(lambda: [batch["x"][3:].reshape(-1, d)])
    else:
        optimizer = module.configure_optimizers()
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        module.train()
        out = module(batch["x"], batch["mask"])
        assert out.scores.shape == (b, c, t)
        loss, _ = module.objective(out, batch)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    changed = [k for k, v in module.head.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"model={model} fusion={fusion}: nothing changed"
    module.eval()
    with torch.no_grad():
        scores = module(batch["x"], batch["mask"]).video_scores
    assert scores.shape == (b, t) and torch.isfinite(scores).all()


def test_late_fusion_feeds_each_head_its_own_stream():
    module = MILModule.from_config(_cfg("fcn", "late"), DIMS).eval()
    x = torch.randn(1, 1, 5, 18)
    with torch.no_grad():
        fused = module(x, torch.ones(1, 5, dtype=torch.bool)).scores[0, 0]
        rgb, audio = (module.head.heads[k](x[0, :, :, s], None).scores[0] for k, s in
                      (("rgb", slice(0, 12)), ("audio", slice(12, 18))))  # fmt: skip
    torch.testing.assert_close(fused, (rgb + audio) / 2)  # FCN has no logits: scores averaged


def test_an_unknown_fusion_is_an_error(tiny_splits):
    from vadmil.data.datamodule import MILDataModule

    store, train, test = tiny_splits
    with pytest.raises(VadmilError, match="unknown data.fusion .*; choose one of early, late"):
        MILDataModule(store=str(store), train=train, test=test, fusion="middle")


# ---- Wu layout → two-stream store → HL-Net with audio, end to end ------------------------------------------------
def _xd_release(root: Path, rgb_dim=16, crops=2) -> Path:
    """Tiny XD-Violence-style release: Wu-layout RGB crops + VGGish audio one snippet shorter, lists, annotations.
    The violent videos are loud where they are violent (and only there the RGB is unremarkable)."""
    feats, ann = root / "feats", root / "ann" / "xd_violence"
    feats.mkdir(parents=True), ann.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lists, intervals = {"train": [], "test": []}, []
    for split, n in (("train", 8), ("test", 4)):
        for i in range(n):
            violent = i % 2 == 1
            name = f"{split}{i}_label_{'B1' if violent else 'A'}"
            t = int(rng.integers(10, 20))
            audio = rng.normal(size=(t - 1, 128)).astype(np.float32)
            if violent:
                audio[2:6] += 4.0
                intervals.append(f"{name} 32 95") if split == "test" else None
            for c in range(crops):
                np.save(feats / f"{name}__{c}.npy", rng.normal(size=(t, rgb_dim)).astype(np.float32))
            np.save(feats / f"{name}__vggish.npy", audio)
            lists[split].append(f"/authors/machine/{name}__0.npy")
    (ann / "train.list").write_text("\n".join(lists["train"]) + "\n")
    (ann / "test.list").write_text("\n".join(lists["test"]) + "\n")
    (ann / "annotations.txt").write_text("\n".join(intervals) + "\n")
    return root


def test_a_two_stream_store_imported_from_wu_files_trains_end_to_end(tmp_path):
    root = _xd_release(tmp_path)
    store = tmp_path / "xd.h5"
    imported = run_inprocess("import", "format=wu", "format.reader.n_crops=2", f"input={root / 'feats'}",
                             f"output={store}", "progress=false", cwd=tmp_path)  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-2000:]
    with FeatureStore(store) as s:
        assert s.extra_streams == {"audio": 128}
    result = run_inprocess(
        "train", "experiment=hlnet_xd_violence", f"dataset.store={store}", f"paths.annotations={root / 'ann'}",
        "trainer.max_steps=4", "data.batch_size=4", "data.n_segments=16", "data.val_fraction=0.5",
        "trainer.enable_progress_bar=false", "oracle.every=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["features"]["streams"] == {"rgb": 16, "audio": 128}
    assert metrics["features"]["fusion"] == "early"
    assert metrics["n_videos"]["test"] == 4 and np.isfinite(metrics["test"]["frame_ap_trapz"])
    from vadmil.evaluation.evaluate import evaluate_run

    again = evaluate_run(tmp_path / "run")  # `vadmil eval` reads the run's streams too
    assert again["test"]["frame_ap_trapz"] == pytest.approx(metrics["test"]["frame_ap_trapz"], abs=1e-6)


def test_hlnet_configs_and_the_streams_sweep():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        fused = compose("train", ["experiment=hlnet_xd_violence"])
        audio = compose("train", ["experiment=hlnet_xd_violence_audio"])
        rgb = compose("train", ["experiment=hlnet", "dataset=xd_violence"])
        sweep = compose("train", ["sweep=streams", "experiment=hlnet_xd_violence"], return_hydra_config=True)
    assert (list(fused.data.streams), fused.data.fusion, fused.model.name) == (
        ["rgb", "audio"],
        "early",
        "gcn_hlnet",
    )
    assert list(audio.data.streams) == ["audio"] and list(rgb.data.streams) == ["rgb"]
    assert fused.dataset.name == audio.dataset.name == "xd_violence"
    assert sweep.hydra.sweeper.params["data.streams"] == "[rgb],[audio],[rgb,audio]"

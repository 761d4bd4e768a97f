"""Frozen backbones: every config builds, surgery leaves the pooled feature, weights files load strictly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from vadmil.backbones.base import RANDOM_INIT, FrozenBackbone
from vadmil.backbones.c3d import C3D, SPORTS1M_MEAN, SPORTS1M_STD, C3DBackbone
from vadmil.backbones.pytorchvideo import ARCHS, PyTorchVideoBackbone, build_hub_model
from vadmil.backbones.weights import guess_backbone, load_weights, resolve_weights
from vadmil.commands.base import config_dir
from vadmil.errors import VadmilError

CONF = Path(config_dir()) / "backbone"
CONFIGS = sorted(p.stem for p in CONF.glob("*.yaml"))
FEATURE_DIM = {arch: 2048 for arch in ARCHS} | {"slowfast_r50": 2304, "i3d_r50_rtfm": 2048, "c3d": 4096}
_BUILT: dict[str, FrozenBackbone] = {}


def build(name: str) -> FrozenBackbone:
    """The random-init backbone of conf/backbone/<name>.yaml (cached: tests must not modify it)."""
    if name not in _BUILT:
        _BUILT[name] = instantiate(OmegaConf.load(CONF / f"{name}.yaml"), random_init=True)
    return _BUILT[name]


def small_clip(name: str, n: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3, 16, 112, 112) if name == "c3d" else (n, 3, 8, 64, 64)
    return torch.randn(shape, generator=g)


def features(backbone: FrozenBackbone, clips: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return backbone(clips)


def test_every_arch_and_c3d_has_a_config():
    assert set(ARCHS) | {"c3d", "i3d_r50_rtfm"} == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_a_frozen_pooled_feature_extractor(name):
    b = build(name)
    assert isinstance(b, FrozenBackbone)
    assert b.feature_dim == FEATURE_DIM[name]
    assert f"{b.feature_dim}-d" in (CONF / f"{name}.yaml").read_text()  # the config's comment is right
    assert b.weights_sha256 == RANDOM_INIT
    assert len(b.mean) == len(b.std) == 3 and min(b.std) > 0
    assert b.clip_len >= 1 and b.crop_size >= 32
    # frozen: no gradients, eval mode everywhere, and a parent's train() does not switch it back
    assert not any(p.requires_grad for p in b.parameters())
    assert not any(m.training for m in b.modules())
    b.train()
    assert not any(m.training for m in b.modules())
    assert not any(isinstance(m, nn.Softmax) for m in b.modules())
    if isinstance(b, PyTorchVideoBackbone):
        head = b.model.blocks[-1]
        assert isinstance(head.proj, nn.Identity) and head.activation is None
        assert not any(isinstance(m, (nn.Linear, nn.AvgPool3d)) for m in b.model.modules())
    assert b.describe()["feature_dim"] == b.feature_dim


@pytest.mark.parametrize("name", CONFIGS)
def test_small_clip_gives_one_feature_row_per_clip(name):
    b = build(name)
    y = features(b, small_clip(name))
    assert y.shape == (1, b.feature_dim) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and (y != 0).any()


def test_batch_rows_equal_single_clips():
    b, clips = build("x3d_xs"), small_clip("x3d_xs", n=3)
    y = features(b, clips)
    assert y.shape == (3, 2048)
    torch.testing.assert_close(y[1:2], features(b, clips[1:2]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["x3d_xs", "r2plus1d_r50"])
def test_head_softmax_is_cleared(arch):
    """The hub's X3D and R(2+1)D heads end in Softmax(dim=1); the features must not be a probability simplex."""
    assert isinstance(build_hub_model(arch, seed=None).blocks[-1].activation, nn.Softmax)
    y = features(build(arch), small_clip(arch, n=2))
    assert not torch.allclose(y.sum(1), torch.ones(2), atol=1e-2)
    assert y.max() > 1.0 or y.min() < 0.0 or y.sum(1).max() > 2.0


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = PyTorchVideoBackbone("x3d_xs", random_init=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = PyTorchVideoBackbone("x3d_xs", random_init=True, channels_last=False)
    clips = small_clip("x3d_xs")
    torch.testing.assert_close(features(a, clips), features(b, clips), rtol=1e-4, atol=1e-5)


def test_shorter_and_longer_clips_work_with_adaptive_pools():
    b = build("x3d_xs")
    for frames, side in [(2, 64), (16, 96)]:
        assert features(b, torch.randn(1, 3, frames, side, side)).shape == (1, 2048)


def test_slowfast_builds_its_slow_pathway_and_needs_multiples_of_four():
    b = build("slowfast_r50")
    clips = small_clip("slowfast_r50")
    torch.testing.assert_close(
        features(b, clips), features(b, clips.clone())
    )  # input list is rebuilt each call
    with pytest.raises(VadmilError, match="multiple of 4"):
        features(b, torch.randn(1, 3, 6, 64, 64))
    with pytest.raises(VadmilError, match="multiple of 4"):
        PyTorchVideoBackbone("slowfast_r50", random_init=True, clip_len=13)


def test_rtfm_config_matches_the_posted_recipe():
    """RTFM author's normalisation: mean 114.75, std 57.375 on 0-255 = 0.45 / 0.225 on [0, 1]."""
    b = build("i3d_r50_rtfm")
    assert b.name == "i3d_r50" and b.clip_len == 16 and b.crop_size == 224
    assert b.mean == pytest.approx((114.75 / 255,) * 3) and b.std == pytest.approx((57.375 / 255,) * 3)


# --- C3D ----------------------------------------------------------------------------------------------------

C3D_LAYERS = {  # name: (in, out) channels / features
    "conv1": (3, 64), "conv2": (64, 128), "conv3a": (128, 256), "conv3b": (256, 256), "conv4a": (256, 512),
    "conv4b": (512, 512), "conv5a": (512, 512), "conv5b": (512, 512),
    "fc6": (8192, 4096), "fc7": (4096, 4096), "fc8": (4096, 487),
}  # fmt: skip


def test_c3d_state_dict_is_the_circulated_layout():
    sd = C3D().state_dict()
    assert list(sd) == [f"{layer}.{kind}" for layer in C3D_LAYERS for kind in ("weight", "bias")]
    assert len(sd) == 22
    expected = sum(
        i * o * (27 if layer.startswith("conv") else 1) + o for layer, (i, o) in C3D_LAYERS.items()
    )
    assert expected == 79_991_015  # "about 80 M"
    assert sum(t.numel() for t in sd.values()) == expected
    assert guess_backbone(sd) == (["c3d"], 1.0)


def test_c3d_feature_is_post_relu_fc6():
    b = build("c3d")
    y = features(b, small_clip("c3d", n=1))
    assert y.shape == (1, 4096) and (y >= 0).all() and (y > 0).any()
    with torch.inference_mode():
        assert b.model(small_clip("c3d")).shape == (1, 487)
    assert b.mean == pytest.approx(SPORTS1M_MEAN, abs=1e-6) and b.std == pytest.approx(SPORTS1M_STD, abs=1e-8)
    assert b.describe()["channel_order"] == "rgb"
    with pytest.raises(VadmilError, match="16 x 112 x 112"):
        features(b, torch.randn(1, 3, 8, 112, 112))


def test_c3d_bgr_reverses_the_channels():
    bgr = C3DBackbone(random_init=True, channel_order="bgr")
    clips = small_clip("c3d")
    torch.testing.assert_close(features(bgr, clips), features(build("c3d"), clips.flip(1)))
    with pytest.raises(VadmilError, match="channel_order"):
        C3DBackbone(random_init=True, channel_order="rbg")


# --- weights files ------------------------------------------------------------------------------------------


def _perturbed_x3d_xs() -> PyTorchVideoBackbone:
    """An x3d_xs whose weights differ from the seeded random init (so a reload is really tested)."""
    b = PyTorchVideoBackbone("x3d_xs", random_init=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in b.model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape, generator=g))
    return b


def _save(state: dict, path: Path, layout: str) -> Path:
    if layout == "plain":
        torch.save(state, path)
    elif layout == "pyth":  # zoo checkpoint: full hub model, classifier projection included
        full = dict(state) | {
            "blocks.5.proj.weight": torch.randn(400, 2048),
            "blocks.5.proj.bias": torch.zeros(400),
        }
        torch.save({"model_state": full, "epoch": 196}, path)
    elif layout == "lightning":
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 3}, path)
    return path


@pytest.mark.parametrize("layout", ["plain", "pyth", "lightning"])
def test_features_survive_a_checkpoint_round_trip(tmp_path, layout):
    source = _perturbed_x3d_xs()
    path = _save(source.model.state_dict(), tmp_path / f"x3d_xs.{layout}", layout)
    cfg = OmegaConf.load(CONF / "x3d_xs.yaml")
    loaded = instantiate(cfg, weights=str(path))
    clips = small_clip("x3d_xs", n=2)
    expected = features(source, clips)
    torch.testing.assert_close(features(loaded, clips), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(features(build("x3d_xs"), clips), expected)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.describe()["weights_sha256"] == loaded.weights_sha256


def test_resolve_weights_needs_exactly_one_source(tmp_path):
    with pytest.raises(
        VadmilError, match=r"backbone x3d_xs needs weights: pass backbone.weights=<local file>"
    ):
        resolve_weights(None, False, "x3d_xs")
    with pytest.raises(VadmilError, match="random_init=true"):
        PyTorchVideoBackbone("x3d_xs")
    with pytest.raises(VadmilError, match="needs weights"):
        C3DBackbone()
    with pytest.raises(VadmilError, match="both"):
        PyTorchVideoBackbone("x3d_xs", weights=str(tmp_path / "w.pt"), random_init=True)
    assert resolve_weights(None, True, "c3d") is None


def test_missing_and_unreadable_files_are_named(tmp_path):
    missing = tmp_path / "nowhere.pyth"
    with pytest.raises(VadmilError, match=r"nowhere\.pyth does not exist"):
        PyTorchVideoBackbone("x3d_xs", weights=str(missing))
    text = tmp_path / "notes.pyth"
    text.write_text("not a checkpoint")
    with pytest.raises(VadmilError, match=r"notes\.pyth is not a readable PyTorch file"):
        PyTorchVideoBackbone("x3d_xs", weights=str(text))
    odd = tmp_path / "pickled.pt"
    torch.save({"model_state": {"w": torch.zeros(1)}, "extra": _NotATensor()}, odd)
    with pytest.raises(VadmilError, match=r"pickled\.pt holds Python objects"):
        load_weights(nn.Linear(1, 1), odd)
    empty = tmp_path / "list.pt"
    torch.save([1, 2], empty)
    with pytest.raises(VadmilError, match="holds no state dict"):
        load_weights(nn.Linear(1, 1), empty)


class _NotATensor:
    pass


def test_wrong_architecture_lists_keys_and_names_the_likely_backbone(tmp_path):
    path = tmp_path / "x3d_xs.pt"
    torch.save(build("x3d_xs").model.state_dict(), path)
    with pytest.raises(VadmilError) as err:
        PyTorchVideoBackbone("i3d_r50", weights=str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "backbone i3d_r50" in msg
    assert "missing keys (" in msg and "unexpected keys (" in msg
    assert "blocks.0.conv.conv_t.weight" in msg  # an x3d_xs key the i3d_r50 does not have
    assert "looks like weights for x3d_xs/x3d_s/x3d_m" in msg


def test_shape_mismatch_is_reported(tmp_path):
    state = build("x3d_xs").model.state_dict()
    key = next(k for k, v in state.items() if v.ndim == 5)
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(VadmilError, match=rf"1 tensors have other shapes \({key}: file"):
        PyTorchVideoBackbone("x3d_xs", weights=str(path))


def test_bad_settings_are_user_errors():
    with pytest.raises(VadmilError, match="x3d_xs"):
        PyTorchVideoBackbone("x3d_xxl", random_init=True)
    with pytest.raises(VadmilError, match="mean"):
        PyTorchVideoBackbone("x3d_xs", random_init=True, mean=[0.5, 0.5])
    with pytest.raises(VadmilError, match="std"):
        PyTorchVideoBackbone("x3d_xs", random_init=True, std=0.0)
    with pytest.raises(VadmilError, match=r"\[N, 3, T, H, W\]"):
        features(build("x3d_xs"), torch.randn(3, 8, 64, 64))


# --- slow: native sizes -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHS))
def test_native_clip_features_equal_the_fixed_pool_model(arch):
    """At the native clip and crop, adaptive pools give the original pooled feature (proj/activation removed)."""
    b = build(arch)
    reference = build_hub_model(arch).eval()
    reference.blocks[-1].proj, reference.blocks[-1].activation = nn.Identity(), None
    clips = torch.randn(
        1, 3, b.clip_len, b.crop_size, b.crop_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        if arch == "slowfast_r50":
            slow = clips.index_select(2, torch.linspace(0, b.clip_len - 1, b.clip_len // 4).long())
            expected = reference([slow, clips])
        else:
            expected = reference(clips)
    got = features(b, clips)
    assert got.shape == (1, b.feature_dim)
    torch.testing.assert_close(got, expected.reshape(1, -1), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_c3d_round_trip_through_a_state_dict_file(tmp_path):
    source = C3DBackbone(random_init=True)
    with torch.no_grad():
        source.model.fc6.bias.add_(0.1)
    path = tmp_path / "c3d.pickle"
    torch.save(source.model.state_dict(), path)
    loaded = C3DBackbone(weights=str(path))
    clips = small_clip("c3d")
    torch.testing.assert_close(features(loaded, clips), features(source, clips))
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

"""Snippet transforms: float conversion, resizing, crop geometry and order, normalisation, the full recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from vadmil.errors import VadmilError
from vadmil.extract import (
    CROP_ORDERS,
    SnippetTransform,
    crop,
    normalise,
    resize_short_side,
    resize_to,
    to_float_clip,
)


def coordinate_clip(length: int = 2, height: int = 20, width: int = 30) -> torch.Tensor:
    """[3, L, H, W] whose channels hold each pixel's y, x and t."""
    t, y, x = torch.meshgrid(torch.arange(length), torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([y, x, t]).float()


def test_to_float_clip():
    frames = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    clip = to_float_clip(frames)
    assert clip.shape == (3, 2, 4, 5) and clip.dtype == torch.float32
    assert clip[1, 1, 2, 3].item() == pytest.approx(frames[1, 2, 3, 1] / 255)
    assert frames[0, 0, 0, 1] == 1  # input untouched
    with pytest.raises(VadmilError, match="uint8"):
        to_float_clip(frames.astype(np.float32))


@pytest.mark.parametrize(
    ("hw", "expected"), [((576, 768), (256, 341)), ((768, 576), (341, 256)), ((300, 300), (256, 256))]
)
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_short_side_shapes_and_values(hw, expected, antialias):
    clip = torch.rand(3, 2, *hw)
    out = resize_short_side(clip, 256, antialias=antialias)
    assert out.shape == (3, 2, *expected)
    ref = TF.resize(clip, list(expected), interpolation=TF.InterpolationMode.BILINEAR, antialias=antialias)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_resize_to_fixed_size():
    clip = torch.rand(3, 4, 240, 320)
    assert resize_to(clip, (128, 171)).shape == (3, 4, 128, 171)
    assert resize_to(clip, (240, 320)) is clip


def test_crop_positions_and_order():
    clip = coordinate_clip(height=20, width=30)
    assert CROP_ORDERS["five"] == ["top_left", "top_right", "bottom_left", "bottom_right", "center"]
    assert CROP_ORDERS["ten"][5:] == [f"flipped_{n}" for n in CROP_ORDERS["five"]]
    top_left = {"top_left": (0, 0), "top_right": (0, 22), "bottom_left": (12, 0), "bottom_right": (12, 22)}
    top_left["center"] = (6, 11)
    for mode, count in (("center", 1), ("five", 5), ("ten", 10)):
        crops = crop(clip, 8, mode)
        assert crops.shape == (count, 3, 2, 8, 8)
        for k, name in enumerate(CROP_ORDERS[mode]):
            y, x = crops[k, 0, 0, 0, 0].item(), crops[k, 1, 0, 0, 0].item()
            if name.startswith("flipped_"):
                y0, x0 = top_left[name.removeprefix("flipped_")]
                assert (y, x) == (y0, 29 - x0), name  # column c of the flipped clip is column W-1-c
            else:
                assert (y, x) == top_left[name], name
            torch.testing.assert_close(crops[k, 2], clip[2, :, :8, :8])  # time untouched
    ten = crop(clip, 8, "ten")
    for k, mirror in enumerate([1, 0, 3, 2, 4]):  # flipped top_left is the mirror image of top_right, ...
        torch.testing.assert_close(ten[5 + k], ten[mirror].flip(-1))


@pytest.mark.parametrize("hw", [(256, 340), (341, 256), (257, 300)])
def test_crops_match_torchvision(hw):
    clip = torch.rand(3, 2, *hw)
    torch.testing.assert_close(crop(clip, 224, "ten"), torch.stack(TF.ten_crop(clip, 224)), atol=0, rtol=0)
    torch.testing.assert_close(crop(clip, 224, "five"), torch.stack(TF.five_crop(clip, 224)), atol=0, rtol=0)
    torch.testing.assert_close(crop(clip, 224, "center")[0], TF.center_crop(clip, 224), atol=0, rtol=0)


def test_crop_errors():
    with pytest.raises(VadmilError, match="unknown crop mode"):
        crop(torch.zeros(3, 1, 8, 8), 4, "three")
    with pytest.raises(VadmilError, match="larger than"):
        crop(torch.zeros(3, 1, 8, 8), 9, "center")


def test_normalise_arithmetic():
    clip = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 1, 1, 4).expand(3, 1, 1, 4)
    torch.testing.assert_close(normalise(clip, 0.5, 0.5)[0, 0, 0], torch.tensor([-1.0, -0.5, 0.0, 1.0]))
    # Kinetics-style 114.75 / 57.375 on 0-255 pixels is 0.45 / 0.225 on [0, 1].
    assert normalise(torch.full((3, 1, 1, 1), 114.75 / 255), 0.45, 0.225).abs().max() < 1e-6
    per_channel = normalise(torch.ones(3, 1, 1, 1), [0.0, 0.5, 1.0], [1.0, 0.5, 0.25]).flatten()
    torch.testing.assert_close(per_channel, torch.tensor([1.0, 1.0, 0.0]))
    crops = torch.rand(10, 3, 2, 4, 4)
    torch.testing.assert_close(normalise(crops, 0.5, 0.5), crops * 2 - 1)  # [C, 3, L, H, W] works too
    with pytest.raises(VadmilError, match="std"):
        normalise(clip, 0.5, 0.0)


def test_snippet_transform_rtfm_recipe():
    snippet = np.random.default_rng(0).integers(0, 256, (16, 256, 340, 3), dtype=np.uint8)
    snippet[:, :, :, 0] = 0
    snippet[:, :, :, 1] = 255
    t = SnippetTransform(short_side=256, crop_size=224, crops="ten", mean=0.5, std=0.5)
    out = t(snippet)
    assert out.shape == (10, 3, 16, 224, 224) and out.dtype == torch.float32 and t.n_crops == 10
    torch.testing.assert_close(out[:, 0], torch.full_like(out[:, 0], -1.0))
    torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], 1.0))
    assert out.min() >= -1.0 and out.max() <= 1.0
    # Same as doing the steps by hand, normalising after cropping.
    steps = normalise(crop(resize_short_side(to_float_clip(snippet), 256), 224, "ten"), 0.5, 0.5)
    torch.testing.assert_close(out, steps)
    assert t.config()["crop_order"] == CROP_ORDERS["ten"]


def test_snippet_transform_c3d_and_camera_frames():
    c3d = SnippetTransform(
        short_side=None, resize=(128, 171), crop_size=112, crops="center", mean=0.5, std=0.5
    )
    assert c3d(np.zeros((16, 240, 320, 3), np.uint8)).shape == (1, 3, 16, 112, 112)
    rtfm = SnippetTransform()
    assert rtfm(np.zeros((16, 576, 768, 3), np.uint8)).shape == (10, 3, 16, 224, 224)
    with pytest.raises(VadmilError, match="crops"):
        SnippetTransform(crops="seven")


def test_snippet_transform_takes_config_lists():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225], "resize": [32, 40]})
    t = SnippetTransform(
        short_side=None, resize=cfg.resize, crop_size=16, crops="five", mean=cfg.mean, std=cfg.std
    )
    assert t(np.zeros((4, 24, 30, 3), np.uint8)).shape == (5, 3, 4, 16, 16)
    assert t.config()["mean"] == [0.45, 0.45, 0.45] and t.config()["resize"] == [32, 40]

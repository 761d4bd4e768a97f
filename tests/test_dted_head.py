"""DTEDHead (docs/methods.md §6, reconstructed): encoder–decoder shape bookkeeping and its masked temporal ops."""

import pytest
import torch

from vadmil.errors import VadmilError
from vadmil.heads.dted import DTEDHead, _activate
from vadmil.heads.temporal import MaskedConv1d, masked_max_pool, upsample_to


def test_encoder_and_decoder_widths_mirror_each_other():
    head = DTEDHead(64, channels=(256, 128))
    assert [(c.in_channels, c.out_channels) for c in head.encoder] == [(64, 256), (256, 128)]
    assert [(c.in_channels, c.out_channels) for c in head.decoder] == [(128, 128), (128, 256)]
    assert head.classifier.in_features == 256


def test_masked_max_pool_keeps_a_lone_last_step_and_ignores_padding():
    x = torch.tensor([[[1.0, 5.0, 2.0, -9.0, 7.0]]])
    pooled, mask = masked_max_pool(x, torch.tensor([[True, True, True, False, False]]))
    assert pooled.tolist() == [[[5.0, 2.0, 0.0]]]
    assert mask.tolist() == [[True, True, False]]


def test_upsampling_restores_the_length():
    assert upsample_to(torch.tensor([[[1.0, 2.0, 3.0]]]), 5).tolist() == [[[1.0, 1.0, 2.0, 2.0, 3.0]]]


def test_masked_conv_sees_zeros_beyond_the_video():
    torch.manual_seed(0)
    conv = MaskedConv1d(2, 3, 3, dilation=2)
    x = torch.randn(1, 2, 8)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    assert torch.allclose(conv(x, mask)[..., :5], conv(x[..., :5]), atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        MaskedConv1d(2, 3, 4)


def test_normalised_relu_is_at_most_one_per_step():
    y = _activate(torch.randn(2, 6, 9) * 10, "norm_relu")
    assert float(y.min()) >= 0 and float(y.amax(dim=1).max()) <= 1.0


@pytest.mark.parametrize("t", [1, 2, 3, 4, 33])
def test_any_length_gives_one_score_per_instance(t):
    out = DTEDHead(8).eval()(torch.randn(2, t, 8))
    assert out.scores.shape == (2, t)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(VadmilError, match="unknown DTED activation 'gelu'"):
        DTEDHead(8, activation="gelu")

"""RTFM's scoring path (CPU, evaluation mode, no gradient) computes the same scores as its training path.

Scoring runs the kernel-3 convolutions with Winograd's F(m, 3) for m = 6 on oneDNN's matrix product, the
non-local block in its T-linear order, and sequences in row-bounded groups cut to their real length; training
runs F(2, 3) with autograd. Float64 holds the algebra exact; float32 holds the scores users get to rounding.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests.batchnorm import randomise_batch_norms
from vadmil.errors import VadmilError
from vadmil.heads import inference_linear as inference_linear_module
from vadmil.heads import rtfm
from vadmil.heads.inference_linear import inference_linear, onednn_applies
from vadmil.heads.rtfm import NonLocalBlock1d, RTFMHead
from vadmil.heads.winograd import TILE_POINTS, conv3_inference, transform_filters, winograd_matrices


def _training_path_scores(head: RTFMHead, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # a gradient-enabled forward takes the F(2, 3) training formulation
        return head(x, mask).scores.detach()


@pytest.mark.parametrize("tile", sorted(TILE_POINTS))
@pytest.mark.parametrize("dilation", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [1, 2, 5, 6, 13, 40])
def test_winograd_tiles_compute_the_convolution_exactly(tile, dilation, length):
    torch.manual_seed(length * 10 + dilation)
    x = torch.randn(3, length, 7, dtype=torch.float64)
    w, b = torch.randn(5, 7, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = F.conv1d(x.transpose(1, 2), w, b, padding=dilation, dilation=dilation).transpose(1, 2)
    got = conv3_inference(x, transform_filters(w, tile), b, dilation)
    torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-11)


def test_winograd_matrices_are_the_known_f23_and_reject_unknown_tiles():
    a_t, g, b_t = winograd_matrices(2)  # Lavin & Gray's F(2, 3), up to the sign of the last row
    torch.testing.assert_close(a_t, torch.tensor([[1.0, 1, 1, 0], [0, 1, -1, 1]], dtype=torch.float64))
    torch.testing.assert_close(g, torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                                               dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(b_t, torch.tensor([[1.0, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]],
                                                 dtype=torch.float64))  # fmt: skip
    with pytest.raises(ValueError, match=r"Winograd tile 5: use one of \[2, 4, 6\]"):
        winograd_matrices(5)
    with pytest.raises(VadmilError, match="unknown model.head.inference_tile '3'; choose one of 2, 4, 6"):
        RTFMHead(16, inference_tile=3)


def test_inference_linear_is_linear_and_leaves_gradients_to_f_linear(monkeypatch):
    torch.manual_seed(0)
    x, w, b = torch.randn(37, 64), torch.randn(48, 64), torch.randn(48)
    with torch.inference_mode():
        assert onednn_applies(x, w) == torch.backends.mkldnn.is_available()
        torch.testing.assert_close(inference_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        strided = torch.randn(37, 2, 64)[:, 1]  # rows with a gap between them, as a gathered tile component
        torch.testing.assert_close(inference_linear(strided, w), F.linear(strided, w), rtol=1e-5, atol=1e-5)
        assert inference_linear(x.view(37, 1, 64), w).shape == (37, 1, 48)
    leaf = w.clone().requires_grad_()
    assert not onednn_applies(x, leaf)  # a gradient is wanted: F.linear
    inference_linear(x, leaf).sum().backward()
    torch.testing.assert_close(leaf.grad, x.sum(0).expand(48, 64))
    assert not onednn_applies(x.double(), w.double())
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # a user switched oneDNN off
    with torch.no_grad():
        assert not onednn_applies(x, w)


def test_inference_linear_falls_back_when_the_op_cannot_run(monkeypatch):
    def refuses(*args):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(inference_linear_module, "_ONEDNN_LINEAR", refuses)
    x, w = torch.randn(5, 8), torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(inference_linear(x, w), F.linear(x, w))
        assert not onednn_applies(x, w)  # not tried again


def test_non_local_block_in_linear_order_equals_the_affinity_form():
    torch.manual_seed(0)
    block = NonLocalBlock1d(12).double().eval()
    randomise_batch_norms(block)
    x = torch.randn(4, 9, 12, dtype=torch.float64)
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[1, 5:], mask[3, 1:] = False, False
    expected = block(x.transpose(1, 2), mask).transpose(1, 2)
    torch.testing.assert_close(block.forward_channels_last(x, mask), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile", sorted(TILE_POINTS))
def test_scoring_path_equals_the_training_path_in_float64(tile, monkeypatch):
    """Padded batch, groups of a few sequences (each cut to its longest real video): same scores."""
    monkeypatch.setattr(rtfm, "SCORING_ROWS", 40)
    torch.manual_seed(1)
    head = RTFMHead(24, channels=8, inference_tile=tile).double().eval()
    randomise_batch_norms(head)
    x = torch.randn(6, 17, 24, dtype=torch.float64)
    mask = torch.ones(6, 17, dtype=torch.bool)
    mask[2, 11:], mask[3, 4:], mask[4, 16:], mask[5, 1:] = False, False, False, False
    expected = _training_path_scores(head, x, mask)
    with torch.inference_mode():
        out = head(x, mask)
    torch.testing.assert_close(out.scores[mask], expected[mask], rtol=1e-10, atol=1e-12)
    # steps past a group's longest video are zeros, not stale memory
    assert torch.isfinite(out.features).all()


def test_float32_scores_match_the_training_path_to_rounding():
    """RTFM's widths on a 2048-d input: the scores users get differ from the F(2, 3) path by float rounding."""
    torch.manual_seed(0)
    head = RTFMHead(2048).eval()
    randomise_batch_norms(head)
    x = torch.randn(4, 300, 2048)
    mask = torch.ones(4, 300, dtype=torch.bool)
    mask[2:, 170:] = False
    expected = _training_path_scores(head, x, mask)
    with torch.no_grad():
        got = head(x, mask).scores
    assert float((got - expected)[mask].abs().max()) < 1e-5


def test_cached_filters_follow_weight_updates():
    """Scoring caches the transformed filters; in-place updates and a loaded checkpoint must refresh them."""
    torch.manual_seed(0)
    head = RTFMHead(16, channels=8).double().eval()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    for step in range(3):
        with torch.no_grad():
            got = head(x, mask).scores
        torch.testing.assert_close(got, _training_path_scores(head, x, mask), rtol=1e-10, atol=1e-12)
        with torch.no_grad():  # as an optimiser or an EMA update would, without leaving evaluation mode
            for conv in (*head.mtn.pyramid, head.mtn.fuse):
                conv.weight.add_(torch.randn_like(conv.weight) * (step + 1))
    other = RTFMHead(16, channels=8).double().eval()
    head.load_state_dict(other.state_dict())
    with torch.no_grad():
        got = head(x, mask).scores
    torch.testing.assert_close(got, _training_path_scores(other, x, mask), rtol=1e-10, atol=1e-12)

"""RTFMHead (docs/methods.md §5; docs/heads.md, RTFM): the MTN's structure, the non-local block, initialisation and magnitudes."""

import pytest
import torch
from torch import nn

from vadmil.heads.rtfm import MultiScaleTemporalNetwork, NonLocalBlock1d, RTFMHead


def test_mtn_layers_follow_the_paper():
    mtn = MultiScaleTemporalNetwork(2048)
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.dilation[0]) for c in mtn.pyramid] == [
        (2048, 512, 3, 1), (2048, 512, 3, 2), (2048, 512, 3, 4)
    ]  # fmt: skip
    assert mtn.reduce[0].kernel_size == (1,) and mtn.reduce[0].bias is None
    assert (mtn.fuse.in_channels, mtn.fuse.out_channels, mtn.fuse.kernel_size, mtn.fuse.bias) == (
        2048,
        2048,
        (3,),
        None,
    )
    nl = mtn.non_local
    assert (nl.theta.in_channels, nl.theta.out_channels) == (512, 256)


def test_scorer_layers_and_dropout():
    head = RTFMHead(64)
    linears = [(m.in_features, m.out_features) for m in head.scorer if isinstance(m, nn.Linear)]
    assert linears == [(64, 512), (512, 128), (128, 1)]
    assert [m.p for m in head.modules() if isinstance(m, nn.Dropout)] == [0.7, 0.7, 0.7]


def test_init_is_xavier_uniform_with_zero_biases_and_the_non_local_block_starts_as_identity():
    torch.manual_seed(0)
    head = RTFMHead(256)
    first = head.scorer[0].weight.detach()
    bound = (6 / (256 + 512)) ** 0.5
    assert float(first.abs().max()) <= bound and float(first.abs().max()) > 0.9 * bound
    assert all(float(m.bias.detach().abs().max()) == 0 for m in head.modules() if isinstance(m, nn.Linear))
    block = NonLocalBlock1d(16)
    block.reset_output()
    block.eval()
    x = torch.randn(2, 16, 9)
    assert torch.equal(block(x, torch.ones(2, 9, dtype=torch.bool)), x)


def _manual_non_local(block, x):
    """z = x + W((θᵀφ / T) g) for one unpadded video x [C, T]."""
    theta, phi, g = (m(x[None])[0] for m in (block.theta, block.phi, block.g))
    y = (theta.T @ phi / x.shape[1]) @ g.T
    return x + block.out(y.T[None])[0]


def test_non_local_block_against_the_formula():
    torch.manual_seed(0)
    block = NonLocalBlock1d(8).eval()
    nn.init.normal_(block.out[1].weight)  # make the residual branch visible
    x = torch.randn(1, 8, 6)
    assert torch.allclose(
        block(x, torch.ones(1, 6, dtype=torch.bool))[0], _manual_non_local(block, x[0]), atol=1e-5
    )


def test_magnitudes_are_feature_norms_and_follow_the_dropout_option():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 32)
    after = RTFMHead(32, magnitude_after_dropout=True).train()
    before = RTFMHead(32, magnitude_after_dropout=False).train()
    before.load_state_dict(after.state_dict())
    torch.manual_seed(1)
    out_after = after(x)
    assert torch.allclose(out_after.magnitudes, out_after.features.norm(dim=-1))
    zero_fraction = float((out_after.features == 0).float().mean())
    assert 0.6 < zero_fraction < 0.8  # dropout 0.7 applied before the magnitudes (the code)
    torch.manual_seed(1)
    out_before = before(x)
    assert float((out_before.features == 0).float().mean()) < 0.05
    assert torch.allclose(out_before.magnitudes, out_before.features.norm(dim=-1))
    after.eval(), before.eval()
    assert torch.allclose(after(x).magnitudes, before(x).magnitudes)  # identical at test time


@pytest.mark.parametrize("in_dim", [2048, 1024])
def test_residual_keeps_the_feature_dimension(in_dim):
    out = RTFMHead(in_dim).eval()(torch.randn(1, 4, in_dim))
    assert out.features.shape == (1, 4, in_dim)

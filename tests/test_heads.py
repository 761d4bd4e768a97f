"""FCNHead (Sultani et al., docs/methods.md §3) and the HeadOutput every head returns."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from vadmil.heads.fcn import FCNHead
from vadmil.heads.output import HeadOutput

CONF = Path(__file__).resolve().parents[1] / "conf"


def _linears(head):
    return [m for m in head.modules() if isinstance(m, nn.Linear)]


def _manual_forward(head, x, hidden_activation):
    """The paper's network written out by hand (eval mode: dropout is the identity)."""
    l1, l2, l3 = _linears(head)
    h = torch.relu(x @ l1.weight.T + l1.bias)
    h = h @ l2.weight.T + l2.bias
    if hidden_activation:
        h = torch.relu(h)
    return torch.sigmoid(h @ l3.weight.T + l3.bias).squeeze(-1)


@pytest.mark.parametrize("in_dim", [4096, 1024, 7])
def test_layer_sizes_follow_the_paper(in_dim):
    sizes = [(m.in_features, m.out_features) for m in _linears(FCNHead(in_dim))]
    assert sizes == [(in_dim, 512), (512, 32), (32, 1)]


@pytest.mark.parametrize("in_dim", [4096, 2048, 1024, 7])
def test_parameter_count(in_dim):
    head = FCNHead(in_dim)
    expected = (in_dim * 512 + 512) + (512 * 32 + 32) + (32 * 1 + 1)
    assert sum(p.numel() for p in head.parameters()) == expected == 512 * in_dim + 16961


def test_custom_hidden_sizes():
    head = FCNHead(10, hidden=(8, 4))
    assert [(m.in_features, m.out_features) for m in _linears(head)] == [(10, 8), (8, 4), (4, 1)]


@pytest.mark.parametrize("t", [1, 32, 300])
@pytest.mark.parametrize("training", [False, True])
def test_output_shape_and_range(t, training):
    torch.manual_seed(0)
    head = FCNHead(24).train(training)
    out = head(torch.randn(5, t, 24) * 10, torch.ones(5, t, dtype=torch.bool))
    assert isinstance(out, HeadOutput)
    assert out.scores.shape == (5, t)
    assert out.scores.dtype == torch.float32
    assert ((out.scores >= 0) & (out.scores <= 1)).all()
    assert out.magnitudes is None and out.features is None


def test_init_is_glorot_normal_with_zero_biases():
    torch.manual_seed(0)
    head = FCNHead(4096)
    for layer in _linears(head):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    big = _linears(head)[0].weight.detach()
    expected_std = (2.0 / (4096 + 512)) ** 0.5
    assert float(big.std()) == pytest.approx(expected_std, rel=0.01)
    assert abs(float(big.mean())) < 0.01 * expected_std


def test_dropout_only_in_training():
    torch.manual_seed(0)
    head = FCNHead(16)
    assert [m.p for m in head.modules() if isinstance(m, nn.Dropout)] == [0.6, 0.6]
    x = torch.randn(4, 20, 16)
    head.eval()
    a, b = head(x).scores, head(x).scores
    assert torch.equal(a, b)
    head.train()
    c, d = head(x).scores, head(x).scores
    assert not torch.allclose(c, d)
    assert not torch.allclose(c, a)


def test_no_dropout_makes_training_deterministic():
    head = FCNHead(16, dropout=0.0).train()
    x = torch.randn(4, 20, 16)
    assert torch.equal(head(x).scores, head.eval()(x).scores)


@pytest.mark.parametrize("hidden_activation", [False, True])
def test_forward_matches_the_network_written_out(hidden_activation):
    torch.manual_seed(1)
    head = FCNHead(12, hidden_activation=hidden_activation).eval()
    with torch.no_grad():  # non-zero biases so every term matters
        for layer in _linears(head):
            layer.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 9, 12)
    expected = _manual_forward(head, x, hidden_activation)
    torch.testing.assert_close(head(x).scores, expected)
    other = _manual_forward(head, x, not hidden_activation)
    assert not torch.allclose(expected, other)  # the option does change the output


def test_scores_are_per_snippet_and_ignore_the_mask():
    torch.manual_seed(2)
    head = FCNHead(8).eval()
    x = torch.randn(2, 6, 8)
    base = head(x).scores
    masked = head(x, torch.tensor([[True] * 3 + [False] * 3] * 2)).scores
    assert torch.equal(base, masked)
    y = x.clone()
    y[:, 4] = torch.randn(2, 8)  # changing one snippet changes only that snippet's score
    changed = head(y).scores
    assert torch.equal(changed[:, [0, 1, 2, 3, 5]], base[:, [0, 1, 2, 3, 5]])
    assert not torch.allclose(changed[:, 4], base[:, 4])


def test_fold_reshapes_every_tensor_field_in_bag_major_order():
    b, c, t, e = 3, 4, 5, 2
    n = b * c
    out = HeadOutput(
        scores=torch.arange(n * t, dtype=torch.float32).reshape(n, t),
        magnitudes=torch.arange(n * t, dtype=torch.float32).reshape(n, t) + 1000,
        features=torch.arange(n * t * e, dtype=torch.float32).reshape(n, t, e),
    )
    folded = out.fold(b, c)
    assert folded.scores.shape == (b, c, t)
    assert folded.magnitudes.shape == (b, c, t)
    assert folded.features.shape == (b, c, t, e)
    for i in range(b):
        for k in range(c):
            row = i * c + k  # the head saw bag i's crop k at row i·C + k
            assert torch.equal(folded.scores[i, k], out.scores[row])
            assert torch.equal(folded.magnitudes[i, k], out.magnitudes[row])
            assert torch.equal(folded.features[i, k], out.features[row])
    assert out.scores.shape == (n, t)  # the original is left as it was


def test_fold_keeps_missing_fields_missing():
    folded = HeadOutput(scores=torch.rand(6, 4)).fold(2, 3)
    assert folded.scores.shape == (2, 3, 4)
    assert folded.magnitudes is None and folded.features is None


def test_video_scores_average_the_crops():
    scores = torch.rand(2, 3, 5)
    vs = HeadOutput(scores=scores).video_scores
    assert vs.shape == (2, 5)
    for i in range(2):
        for t in range(5):
            assert float(vs[i, t]) == pytest.approx(sum(float(scores[i, k, t]) for k in range(3)) / 3)


def test_head_config_instantiates_with_in_dim_from_outside():
    cfg = OmegaConf.load(CONF / "model" / "head" / "fcn.yaml")
    assert "in_dim" not in cfg  # the store decides the feature dimension
    head = instantiate(cfg, in_dim=48)
    assert isinstance(head, FCNHead)
    assert [(m.in_features, m.out_features) for m in _linears(head)] == [(48, 512), (512, 32), (32, 1)]
    assert [m.p for m in head.modules() if isinstance(m, nn.Dropout)] == [0.6, 0.6]
    assert not any(isinstance(m, nn.ReLU) for m in list(head.net)[3:])  # no activation after 512→32
    assert head.eval()(torch.randn(2, 7, 48)).scores.shape == (2, 7)

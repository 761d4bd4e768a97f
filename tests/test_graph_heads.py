"""The graph heads (docs/methods.md §4; docs/heads.md, GCN): adjacencies and forward passes against plain computations written here."""

import math

import pytest
import torch

from vadmil.errors import VadmilError
from vadmil.heads.gcn import GCNHead
from vadmil.heads.graphs import (
    GraphConv,
    holistic_adjacency,
    similarity_adjacency,
    symmetric_normalise,
    temporal_adjacency,
)


def _mask(lengths, t):
    return torch.tensor([[i < n for i in range(t)] for n in lengths])


def test_temporal_adjacency_matches_the_formula_within_each_video():
    a = temporal_adjacency(_mask([4, 2], 4), scale=math.e)
    for i in range(4):
        for j in range(4):
            assert float(a[0, i, j]) == pytest.approx(math.exp(-abs(i - j) / math.e), rel=1e-6)
            expected = math.exp(-abs(i - j) / math.e) if i < 2 and j < 2 else 0.0
            assert float(a[1, i, j]) == pytest.approx(expected, rel=1e-6)


def test_similarity_adjacency_against_a_loop():
    torch.manual_seed(0)
    h = torch.randn(2, 5, 3)
    lengths = [5, 3]
    a = similarity_adjacency(h, _mask(lengths, 5))
    for b, n in enumerate(lengths):
        for i in range(5):
            row_max = max(float(h[b, i] @ h[b, k]) for k in range(n)) if i < n else 0.0
            for j in range(5):
                expected = math.exp(float(h[b, i] @ h[b, j]) - row_max) if i < n and j < n else 0.0
                assert float(a[b, i, j]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert float(a[0].max()) <= 1.0 + 1e-6  # each row's largest entry is exp(0)


def test_holistic_adjacency_thresholds_then_softmaxes_each_row():
    x = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0]]])
    a = holistic_adjacency(x, _mask([3], 4), threshold=0.7)
    unit = x[0, :3] / x[0, :3].norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    cos = torch.where(cos < 0.7, torch.zeros_like(cos), cos)
    expected = torch.softmax(cos, dim=1)
    assert torch.allclose(a[0, :3, :3], expected, atol=1e-6)
    assert torch.all(a[0, 3] == 0) and torch.all(a[0, :, 3] == 0)  # padding sends and receives nothing
    assert torch.allclose(a[0, :3].sum(dim=1), torch.ones(3))


def test_symmetric_normalisation_against_the_matrix_formula():
    torch.manual_seed(1)
    a = torch.rand(1, 4, 4)
    d = torch.diag(a[0].sum(dim=1) ** -0.5)
    assert torch.allclose(symmetric_normalise(a)[0], d @ a[0] @ d, atol=1e-6)
    zero_row = torch.zeros(1, 2, 2)
    assert torch.equal(symmetric_normalise(zero_row), zero_row)  # no NaN from empty rows


def test_graph_conv_has_no_bias_and_multiplies_by_the_graph():
    conv = GraphConv(3, 2)
    assert conv.weight.bias is None
    x, a = torch.randn(1, 4, 3), torch.rand(1, 4, 4)
    assert torch.allclose(conv(x, a), a @ (x @ conv.weight.weight.T), atol=1e-6)


def _manual_zhong(head, x):
    """Zhong et al.'s network on one unpadded video x [T, D], eval mode, written out by hand."""
    l1, l2 = head.trunk[0], head.trunk[3]
    h = torch.relu(torch.relu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias)
    t = x.shape[0]
    idx = torch.arange(t, dtype=torch.float32)
    temporal = torch.exp(-(idx[:, None] - idx[None, :]).abs())
    dots = h @ h.T
    similar = torch.exp(dots - dots.max(dim=1, keepdim=True).values)

    def norm(a):
        d = torch.diag(a.sum(dim=1) ** -0.5)
        return d @ a @ d

    def branch(layers, a):
        return norm(a) @ (torch.relu(norm(a) @ (h @ layers[0].weight.weight.T)) @ layers[1].weight.weight.T)

    return torch.sigmoid(((branch(head.branch_a, temporal) + branch(head.branch_b, similar)) / 2).squeeze(-1))


def test_zhong_forward_matches_the_papers_network():
    torch.manual_seed(0)
    head = GCNHead(12).eval()
    assert [(m.in_features, m.out_features) for m in (head.trunk[0], head.trunk[3])] == [
        (12, 512),
        (512, 128),
    ]
    x = torch.randn(1, 9, 12)
    assert torch.allclose(head(x).scores[0], _manual_zhong(head, x[0]), atol=1e-5)


def test_hlnet_variant_concatenates_two_32d_branches():
    head = GCNHead(12, graphs="hlnet").eval()
    assert (head.classifier.in_features, head.classifier.out_features) == (64, 1)
    out = head(torch.randn(2, 7, 12))
    assert torch.allclose(out.scores, torch.sigmoid(out.logits))


def test_unknown_graphs_is_a_clear_error():
    with pytest.raises(VadmilError, match="unknown GCN graphs 'kipf'"):
        GCNHead(8, graphs="kipf")

"""Graph heads: Zhong et al., CVPR 2019 (two-branch GCN) and HL-Net's graph branches (Wu et al., ECCV 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.graphs import (
    GraphConv,
    holistic_adjacency,
    similarity_adjacency,
    symmetric_normalise,
    temporal_adjacency,
)
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import full_mask

GRAPHS = ("zhong", "hlnet")


class GCNHead(nn.Module):
    """A per-snippet MLP trunk followed by two graph branches whose outputs make one logit per snippet.

    ``graphs="zhong"`` (Zhong et al.'s NoiseFilter): trunk Linear(D→512)+ReLU+Dropout → Linear(512→128)+ReLU+
    Dropout; branch A on the temporal graph exp(−|i−j|), branch B on the feature-similarity graph of the trunk
    features, both symmetrically normalised, each GraphConv(128→32)+ReLU → GraphConv(32→1); logit = (A + B) / 2.

    ``graphs="hlnet"`` (HL-Net): the same trunk (HL-Net's kernel-1 Conv1d equals a Linear); a holistic branch on
    the thresholded, row-softmaxed cosine graph of the *input* features and a localized branch on exp(−|i−j|/e),
    each GraphConv(128→32)+ReLU+Dropout → GraphConv(32→32)+ReLU; the two concatenated → Linear(64→1).

    Both return sigmoid(logit) as scores and the logits (for top-k BCE on logits). Graphs are built over each
    video's real snippets only, so padding never changes a video's scores.

    Args:
        in_dim: feature dimension D, taken from the feature store.
    Shapes: features [N, T, D], mask [N, T] → scores, logits [N, T].
    """

    def __init__(
        self,
        in_dim: int,
        graphs: str = "zhong",
        hidden: tuple[int, int] = (512, 128),
        graph_hidden: int = 32,
        dropout: float = 0.6,
        similarity_threshold: float = 0.7,
    ):
        super().__init__()
        check_choice("GCN graphs", graphs, GRAPHS)
        h1, h2 = hidden
        self.graphs, self.threshold = graphs, similarity_threshold
        self.trunk = nn.Sequential(
            nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout)
        )  # fmt: skip
        out_dim = 1 if graphs == "zhong" else graph_hidden
        self.branch_a = nn.ModuleList([GraphConv(h2, graph_hidden), GraphConv(graph_hidden, out_dim)])
        self.branch_b = nn.ModuleList([GraphConv(h2, graph_hidden), GraphConv(graph_hidden, out_dim)])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * graph_hidden, 1) if graphs == "hlnet" else None

    def _branch(self, layers: nn.ModuleList, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        h = torch.relu(layers[0](h, adjacency))
        if self.graphs == "zhong":
            return layers[1](h, adjacency)  # [N, T, 1]: a logit
        return torch.relu(layers[1](self.dropout(h), adjacency))

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        mask = full_mask(features, mask)
        h = self.trunk(features)
        if self.graphs == "zhong":
            a = self._branch(self.branch_a, h, symmetric_normalise(temporal_adjacency(mask)))
            b = self._branch(self.branch_b, h, symmetric_normalise(similarity_adjacency(h, mask)))
            logits = ((a + b) / 2).squeeze(-1)
        else:
            holistic = self._branch(self.branch_a, h, holistic_adjacency(features, mask, self.threshold))
            local = self._branch(self.branch_b, h, temporal_adjacency(mask, scale=math.e))
            logits = self.classifier(torch.cat([holistic, local], dim=-1)).squeeze(-1)
        return HeadOutput(scores=torch.sigmoid(logits), logits=logits)

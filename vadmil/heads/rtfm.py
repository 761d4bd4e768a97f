"""RTFM, Tian et al., ICCV 2021: the multi-scale temporal network, the snippet scorer and feature magnitudes.

Top-k selection by magnitude and RTFM's losses live in the objective (``vadmil.losses``), because selection
averages magnitudes over crops, which only exists after the Lightning module folds crops back into bags.
"""

from __future__ import annotations

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.inference_linear import inference_linear
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import MaskedConv1d, full_mask
from vadmil.heads.winograd import TILE_POINTS, conv3_channels_last, conv3_inference, transform_filters

# rows (sequences × steps) per scoring group: oneDNN's products run at full rate from a few hundred rows, and
# 2,048 rows of 2048-d features keep each temporary near 16 MiB
SCORING_ROWS = 2048


class NonLocalBlock1d(nn.Module):
    """Embedded-dot-product non-local block as in RTFM's code: z = x + BN(W·((θᵀφ / N)·g)), no softmax.

    N is the number of real snippets of each video, and padded snippets are excluded as keys, so a video's
    output does not depend on the padding of its batch. The output BN starts at zero: the block begins as the
    identity.
    Shapes: x [N, C, T], mask [N, T] → [N, C, T].
    """

    def __init__(self, channels: int = 512, inner: int | None = None):
        super().__init__()
        inner = inner or channels // 2
        self.g, self.theta, self.phi = (nn.Conv1d(channels, inner, 1) for _ in range(3))
        self.out = nn.Sequential(nn.Conv1d(inner, channels, 1), nn.BatchNorm1d(channels))

    def reset_output(self) -> None:
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keys = mask[:, None, :].to(x.dtype)
        theta = self.theta(x).transpose(1, 2)  # [N, T, inner]
        phi, g = self.phi(x) * keys, (self.g(x) * keys).transpose(1, 2)  # padded keys contribute nothing
        affinity = theta @ phi / keys.sum(dim=2, keepdim=True).clamp_min(1.0)  # [N, T, T], divided by real N
        return x + self.out((affinity @ g).transpose(1, 2))

    def forward_channels_last(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The same block for scoring, channels last: x [N, T, C], mask [N, T] → [N, T, C].

        Without a softmax the block is linear in the affinities, so with θ, φ, g as [T, inner] rows
        (θφᵀ)g = θ(φᵀg): an [inner × inner] context per video instead of T × T affinities (2·T·inner²
        multiply-adds instead of 2·T²·inner, and no T × T memory for long videos).
        """
        keys = mask[:, :, None].to(x.dtype)
        theta, phi, g = (
            inference_linear(x, conv.weight[:, :, 0], conv.bias) for conv in (self.theta, self.phi, self.g)
        )
        context = (phi * keys).transpose(1, 2) @ (g * keys) / keys.sum(dim=1, keepdim=True).clamp_min(1.0)
        y = inference_linear(theta @ context, self.out[0].weight[:, :, 0], self.out[0].bias)
        return x + self.out[1](y.reshape(-1, y.shape[-1])).view(y.shape)


class MultiScaleTemporalNetwork(nn.Module):
    """RTFM's MTN: a dilated-convolution pyramid and a non-local branch, fused and added to the input.

    Three Conv1d(D→512, k3, dilation 1/2/4)+ReLU+BN; Conv1d(D→512, k1, no bias)+ReLU → non-local block;
    concatenation (4·512) → Conv1d(→D, k3, no bias)+ReLU+BN; plus the input.

    The kernel-3 convolutions keep their ``Conv1d`` parameters (the checkpoint layout) but run channels-last with
    Winograd's F(2, 3) (:mod:`vadmil.heads.winograd`): the same function with a third fewer multiply-adds, which
    are nearly all of RTFM's step. Batch norms see the same values ([N·T, C] rows instead of [N, C, T]).
    Scoring on a CPU (evaluation mode, no gradient) runs F(``inference_tile``, 3) — 6: 2.25× fewer multiply-adds
    than a plain convolution — on oneDNN's matrix product (:mod:`vadmil.heads.inference_linear`), with the
    transformed filters cached per weight version, the non-local block in its T-linear order
    (:meth:`NonLocalBlock1d.forward_channels_last`), and sequences in groups of ≈ ``SCORING_ROWS`` rows.
    Shapes: x [N, T, D], mask [N, T] → [N, T, D].
    """

    def __init__(
        self,
        in_dim: int,
        channels: int = 512,
        dilations: tuple[int, ...] = (1, 2, 4),
        inference_tile: int = 6,
    ):
        super().__init__()
        check_choice("model.head.inference_tile", inference_tile, sorted(TILE_POINTS))
        self.inference_tile = inference_tile
        self._filters: dict[str, tuple[tuple, torch.Tensor]] = {}  # conv name → (weight version key, filters)
        self.pyramid = nn.ModuleList(MaskedConv1d(in_dim, channels, 3, dilation=d) for d in dilations)
        self.pyramid_post = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.BatchNorm1d(channels)) for _ in dilations
        )
        self.reduce = nn.Sequential(nn.Conv1d(in_dim, channels, 1, bias=False), nn.ReLU())
        self.non_local = NonLocalBlock1d(channels)
        self.fuse = MaskedConv1d(channels * (len(dilations) + 1), in_dim, 3, bias=False)
        self.fuse_post = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(in_dim))

    def train(self, mode: bool = True) -> MultiScaleTemporalNetwork:
        self._filters.clear()  # training changes the weights: scoring transforms them afresh
        return super().train(mode)

    def _inference_filters(self, name: str, conv: nn.Conv1d) -> torch.Tensor:
        """F(m, 3) filters of ``conv``, recomputed whenever its weight changes (in-place updates bump the version)."""
        w = conv.weight
        # tensors made under inference_mode keep no version counter
        version = None if w.is_inference() else w._version
        key = (w.data_ptr(), version, w.device, w.dtype, self.inference_tile)
        cached = self._filters.get(name)
        if cached is None or cached[0] != key:
            cached = self._filters[name] = (key, transform_filters(w, self.inference_tile))
        return cached[1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or x.device.type != "cpu":
            return self._forward(x, mask, scoring=False)
        # Scoring: every operation is per sequence, so sequences go through in groups of ≈ SCORING_ROWS rows (the
        # temporaries stay small enough to be reused by the allocator and to stay in cache), each cut to its longest
        # real sequence (a length batch's padding costs nothing); the steps cut off come out as zeros.
        lengths = mask.sum(dim=1).tolist()
        per_group = max(1, SCORING_ROWS // max(1, x.shape[1]))
        if per_group >= x.shape[0] and max(lengths, default=x.shape[1]) == x.shape[1]:
            return self._forward(x, mask, scoring=True)
        out = x.new_empty(x.shape)
        for i in range(0, x.shape[0], per_group):
            t = max(1, int(max(lengths[i : i + per_group])))
            out[i : i + per_group, :t] = self._forward(
                x[i : i + per_group, :t], mask[i : i + per_group, :t], True
            )
            out[i : i + per_group, t:] = 0.0
        return out

    def _forward(self, x: torch.Tensor, mask: torch.Tensor, scoring: bool) -> torch.Tensor:
        # padded steps are zeroed before every convolution (see MaskedConv1d); nothing to do without padding
        keep = None if bool(mask.all()) else mask[:, :, None].to(x.dtype)

        def zeroed(v: torch.Tensor) -> torch.Tensor:
            return v if keep is None else v * keep

        def post(layers: nn.Module, v: torch.Tensor) -> torch.Tensor:  # ReLU + BN over [N·T, C] rows
            return layers(v.reshape(-1, v.shape[-1])).view(v.shape)

        def conv3(name: str, conv: nn.Conv1d, v: torch.Tensor) -> torch.Tensor:
            if scoring:
                return conv3_inference(v, self._inference_filters(name, conv), conv.bias, conv.dilation[0])
            return conv3_channels_last(v, conv.weight, conv.bias, conv.dilation[0])

        inputs = zeroed(x)
        branches = [
            post(layers, conv3(f"pyramid.{i}", conv, inputs))
            for i, (conv, layers) in enumerate(zip(self.pyramid, self.pyramid_post, strict=True))
        ]
        # the 1×1 convolution
        reduced = self.reduce[1](inference_linear(inputs, self.reduce[0].weight[:, :, 0]))
        if scoring:
            branches.append(self.non_local.forward_channels_last(reduced, mask))
        else:
            branches.append(self.non_local(reduced.transpose(1, 2), mask).transpose(1, 2))
        fused = conv3("fuse", self.fuse, zeroed(torch.cat(branches, dim=2)))
        return post(self.fuse_post, fused) + x


class RTFMHead(nn.Module):
    """RTFM's network: MTN → dropout → scorer; magnitudes are the L2 norms of the (dropped-out) MTN features.

    Scorer: Linear(D→512)+ReLU → Dropout → Linear(512→128)+ReLU → Dropout → Linear(128→1) → sigmoid, with
    Xavier-uniform weights and zero biases everywhere (the code's init, non-local output BN excepted).
    ``magnitude_after_dropout=True`` is the code: magnitudes and the features the magnitude loss sees are taken
    after the 0.7 dropout (the identity at test time); ``False`` takes them before it (the paper's description).

    Args:
        in_dim: feature dimension D, taken from the feature store.
    Shapes: features [N, T, D], mask [N, T] → scores, logits, magnitudes [N, T]; features [N, T, D].
    """

    def __init__(
        self,
        in_dim: int,
        channels: int = 512,
        dilations: tuple[int, ...] = (1, 2, 4),
        scorer_hidden: tuple[int, int] = (512, 128),
        dropout: float = 0.7,
        magnitude_after_dropout: bool = True,
        inference_tile: int = 6,
    ):
        super().__init__()
        h1, h2 = scorer_hidden
        self.mtn = MultiScaleTemporalNetwork(in_dim, channels, tuple(dilations), inference_tile)
        self.dropout = nn.Dropout(dropout)
        self.scorer = nn.Sequential(
            nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(h2, 1),
        )  # fmt: skip
        self.magnitude_after_dropout = magnitude_after_dropout
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.mtn.non_local.reset_output()

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        mask = full_mask(features, mask)
        embedded = self.mtn(features, mask)
        dropped = self.dropout(embedded)
        # the D→512 layer is most of the scorer's work: oneDNN when scoring, F.linear when gradients are needed
        first = self.scorer[0]
        logits = self.scorer[1:](inference_linear(dropped, first.weight, first.bias)).squeeze(-1)
        kept = dropped if self.magnitude_after_dropout else embedded
        return HeadOutput(
            scores=torch.sigmoid(logits), logits=logits, magnitudes=kept.norm(dim=-1), features=kept
        )

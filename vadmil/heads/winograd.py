"""Kernel-3 "same" convolutions over channels-last sequences with Winograd's minimal filtering F(2, 3).

A Conv1d with kernel 3 costs 3 multiply-adds per output, input channel and output channel. F(2, 3) (Winograd
1980; Lavin & Gray, CVPR 2016) computes two neighbouring outputs from four inputs with four products instead of
six, so the channel-mixing matrix products — all of the work at RTFM's sizes — shrink by a third, in the forward
pass and in both backward products (autograd differentiates the same four products). Same function as
``F.conv1d(x, w, b, padding=dilation, dilation=dilation)``; the sums are ordered differently, so results agree to
float rounding (tests compare both, forward and gradients).

For two outputs y(t), y(t + d) of a dilation-d filter (g0, g1, g2) over inputs x(t − d), x(t), x(t + d), x(t + 2d):
    m1 = (x0 − x2)·g0,  m2 = (x1 + x2)·(g0 + g1 + g2)/2,  m3 = (x2 − x1)·(g0 − g1 + g2)/2,  m4 = (x1 − x3)·g2
    y(t) = m1 + m2 + m3,  y(t + d) = m2 − m3 − m4.

Scoring needs no gradient, so it can use larger tiles: F(m, 3) computes m outputs from m + 2 inputs with m + 2
products, (m + 2)/m per output instead of 3 (F(4, 3): 1.5, F(6, 3): 1.33). :func:`winograd_matrices` builds them
for any of :data:`TILE_POINTS` by Toom–Cook interpolation, exactly (rational arithmetic), and
:func:`conv3_inference` runs them with oneDNN's matrix product (:mod:`vadmil.heads.inference_linear`). Larger tiles
round more (transform coefficients up to 160 at m = 6 instead of 1): in float32 the outputs of a 2048-channel
convolution differ from a plain convolution's float64 result by ≈ 5× the plain float32 error (on the choice of
points: Barabasz, Anderson, Soodhalter & Gregg, "Error analysis and improving the accuracy of Winograd convolution
for deep neural networks", ACM Trans. Math. Softw. 46(4), 2020).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch
from torch.nn import functional as F

from vadmil.heads.inference_linear import inference_linear

# interpolation points of F(m, 3) besides infinity: small integers and halves keep the transforms well conditioned
TILE_POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}


def winograd_weights(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d weight [C_out, C_in, 3] → the four transformed filters [4, C_in, C_out]."""
    g0, g1, g2 = (weight[:, :, k].t() for k in range(3))
    return torch.stack((g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2))


def conv3_channels_last(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, dilation: int = 1
) -> torch.Tensor:
    """``conv1d(x.transpose(1, 2), weight, bias, padding=dilation, dilation=dilation).transpose(1, 2)``.

    Shapes: x [N, T, C_in] (channels last), weight [C_out, C_in, 3], bias [C_out] → [N, T, C_out].
    """
    n, t, c = x.shape
    d = dilation
    blocks = -(-t // (2 * d)) * 2  # T rounded up to whole tiles (2·d steps), in blocks of d steps
    # d zeros before (x(t − d) at t = 0), zeros after up to the last tile's x(t + 2d)
    xb = F.pad(x, (0, 0, d, (blocks + 2) * d - t - d)).view(n, blocks + 2, d, c)
    x0, x1, x2, x3 = (xb[:, k : k + blocks : 2] for k in range(4))  # each [N, J, d, C]: tile j, phase r
    v = torch.stack((x0 - x2, x1 + x2, x2 - x1, x1 - x3)).view(4, -1, c)
    m = torch.bmm(v, winograd_weights(weight)).view(4, n, blocks // 2, d, -1)
    y = torch.stack((m[0] + m[1] + m[2], m[1] - m[2] - m[3]), dim=2)  # [N, J, 2, d, C_out]
    y = y.view(n, blocks * d, -1)[:, :t]
    return y if bias is None else y + bias


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss–Jordan inverse of a small invertible rational matrix."""
    n = len(matrix)
    rows = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [r[n:] for r in rows]


@functools.cache
def winograd_matrices(tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aᵀ [m, n], G [n, 3], Bᵀ [n, n] of F(m, 3) (n = m + 2): y = Aᵀ[(G g) ⊙ (Bᵀ d)] for a tile d of n inputs.

    Toom–Cook: a linear convolution evaluates both polynomials at n points (the last one infinity), multiplies and
    interpolates; the correlation a convolution layer computes is its transpose, so Aᵀ is the evaluation matrix of
    the m-tap polynomial transposed, G the filter's evaluation matrix and Bᵀ the transposed interpolation matrix.
    Each row j of Bᵀ is scaled to integers and G's row j divided by the same factor. Float64, exact values.
    """
    if tile not in TILE_POINTS:
        raise ValueError(f"Winograd tile {tile!r}: use one of {sorted(TILE_POINTS)}")
    points = [Fraction(p) for p in TILE_POINTS[tile]]
    n = tile + 2

    def evaluation(taps: int) -> list[list[Fraction]]:  # rows [1, p, p², ...] and [0, ..., 0, 1] for infinity
        return [[p**e for e in range(taps)] for p in points] + [[Fraction(0)] * (taps - 1) + [Fraction(1)]]

    interpolation = _inverse(evaluation(n))
    b_t = [[interpolation[k][j] for k in range(n)] for j in range(n)]
    a_t = [[row[i] for row in evaluation(tile)] for i in range(tile)]
    g = evaluation(3)
    for j in range(n):
        scale = math.lcm(*(v.denominator for v in b_t[j]))
        b_t[j] = [v * scale for v in b_t[j]]
        g[j] = [v / scale for v in g[j]]
    return tuple(torch.tensor([[float(v) for v in r] for r in m], dtype=torch.float64) for m in (a_t, g, b_t))


def transform_filters(weight: torch.Tensor, tile: int) -> torch.Tensor:
    """Conv1d weight [C_out, C_in, 3] → F(tile, 3)'s transformed filters [tile + 2, C_out, C_in] (in float64)."""
    g = winograd_matrices(tile)[1].to(weight.device)
    return torch.einsum("jk,ock->joc", g, weight.detach().double()).to(weight.dtype).contiguous()


def conv3_inference(
    x: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor | None = None, dilation: int = 1
) -> torch.Tensor:
    """``conv3_channels_last`` for scoring (no gradient), with F(m, 3) filters from :func:`transform_filters`.

    The tiles are gathered into [n, N·J·d, C_in], transformed, multiplied component by component through
    :func:`inference_linear` and transformed back. Temporaries are ≈ (m + 2)/m × the input: callers keep x to a
    few thousand rows (see ``MultiScaleTemporalNetwork``).
    Shapes: x [N, T, C_in], filters [m + 2, C_out, C_in], bias [C_out] → [N, T, C_out].
    """
    n_seq, t, c = x.shape
    n, c_out = filters.shape[0], filters.shape[1]
    m, d = n - 2, dilation
    a_t, _, b_t = (v.to(x.device, x.dtype) for v in winograd_matrices(m))
    tiles_per_seq = -(-t // (m * d))
    padded = (tiles_per_seq * m + 2) * d
    xp = x.new_empty(n_seq, padded, c)  # zeros only where the padding goes
    xp[:, :d] = 0.0
    xp[:, d : d + t] = x
    xp[:, d + t :] = 0.0
    # tile j, phase r, tap k of sequence s is padded step j·m·d + k·d + r: an overlapping view, gathered once
    tiles = xp.as_strided((n_seq, tiles_per_seq, d, n, c), (padded * c, m * d * c, c, d * c, 1))
    v = (b_t @ tiles.permute(3, 0, 1, 2, 4).reshape(n, -1)).view(n, -1, c)  # [n, N·J·d, C_in]
    # the product at point 1 reaches every output with weight 1 (its Aᵀ column is all ones): the bias rides on it
    with_bias = TILE_POINTS[m].index(1)
    u = torch.stack([inference_linear(v[i], filters[i], bias if i == with_bias else None) for i in range(n)])
    y = (a_t @ u.view(n, -1)).view(m, n_seq, tiles_per_seq, d, c_out).permute(1, 2, 0, 3, 4)
    return y.reshape(n_seq, tiles_per_seq * m * d, c_out)[:, :t]

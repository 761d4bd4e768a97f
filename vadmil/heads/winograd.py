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
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


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

"""Test helper: batch norms with non-trivial statistics, so that equivalence tests exercise them."""

from __future__ import annotations

import torch


def randomise_batch_norms(module: torch.nn.Module) -> None:
    """Give every BatchNorm1d of ``module`` random affine parameters and running statistics (in place)."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)

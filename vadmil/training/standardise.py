"""Per-dimension feature standardisation with training-split statistics, kept inside the model.

Raw backbone features often carry a large common component and very different scales per dimension (a randomly
initialised backbone's pooled features vary by ~1 % of their mean, for instance), which leaves similarity graphs
and small learning rates little to work with. ``data.standardise=true`` maps every feature to
``(x - mean) / std`` with the mean and standard deviation of the *training* videos' snippets (validation and test
videos never contribute). The statistics are buffers of the model, so the checkpoint carries them and
`vadmil eval` and `vadmil score` apply exactly what training applied.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from vadmil.errors import VadmilError


class FeatureStandardiser(nn.Module):
    """``(x - mean) / std`` over the last dimension; padded positions stay zero.

    Args:
        dim: feature dimension D.
    Shapes: ``forward(x [B, C, T, D], mask [B, T]) -> [B, C, T, D]``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * mask[:, None, :, None].to(x.dtype)


def feature_statistics(arrays: Iterable[np.ndarray], eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation [D] over every snippet and crop of ``arrays`` (each [T, C, D]), accumulated
    in float64 one video at a time. Constant dimensions get std 1 (they carry nothing; dividing would blow up
    rounding noise)."""
    count, total, total_sq = 0, None, None
    for x in arrays:
        flat = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
        total = flat.sum(0) if total is None else total + flat.sum(0)
        total_sq = (flat**2).sum(0) if total_sq is None else total_sq + (flat**2).sum(0)
        count += len(flat)
    if not count:
        raise VadmilError("no training snippets to compute the standardisation statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > eps * max(1.0, float(np.abs(mean).max())), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)

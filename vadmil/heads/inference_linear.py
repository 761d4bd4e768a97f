"""Row-wise linear maps for scoring, on the fastest matrix product the CPU build offers.

PyTorch's ``F.linear`` on a CPU calls MKL's sgemm, which runs well below the CPU's peak on AMD processors; oneDNN,
which PyTorch ships for its convolutions, has a matrix product that runs at the convolutions' rate (measured on a
2-core AMD EPYC: 2048×2048 products at ≈ 215 GFLOP/s against MKL's ≈ 170; docs/benchmarks.md). PyTorch exposes it
as ``torch.ops.mkldnn._linear_pointwise`` — the op its own compiler emits for frozen CPU models — which has no
gradient, so it serves inference only: everything else (training, other devices, dtypes and builds without oneDNN)
goes through ``F.linear``. Both compute ``x @ weight.T + bias``; the sums are ordered differently, so results agree
to float rounding.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _onednn_linear_op():
    try:
        return torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # a build without the op
        return None


_ONEDNN_LINEAR = _onednn_linear_op()


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`inference_linear` takes oneDNN's path for these tensors."""
    return (
        _ONEDNN_LINEAR is not None
        and torch.backends.mkldnn.enabled  # a user may switch oneDNN off
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def inference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where it applies (CPU, float32, no gradient needed).

    Shapes: x [..., C_in], weight [C_out, C_in], bias [C_out] → [..., C_out].
    """
    if not onednn_applies(x, weight):
        return F.linear(x, weight, bias)
    global _ONEDNN_LINEAR
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    try:
        y = _ONEDNN_LINEAR(rows, weight.contiguous(), bias, "none", [], "")
    except (RuntimeError, NotImplementedError):
        _ONEDNN_LINEAR = None  # a build whose op cannot run on this CPU: the same result, more slowly
        return F.linear(x, weight, bias)
    return y.view(*x.shape[:-1], weight.shape[0])

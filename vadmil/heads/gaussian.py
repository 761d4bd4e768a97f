"""A Gaussian model of normal snippets, scored by Mahalanobis distance: the probability-based family of
unsupervised detectors (e.g. Rippel et al., "Modeling the Distribution of Normal Data in Pre-Trained Deep
Features for Anomaly Detection", ICPR 2020), with Ledoit-Wolf shrinkage of the covariance (Ledoit & Wolf, 2004)."""

from __future__ import annotations

import torch

from vadmil.errors import VadmilError
from vadmil.heads.normality import NormalModelHead, SnippetSource


def ledoit_wolf(n: int, scatter: torch.Tensor, fourth: float) -> float:
    """Ledoit-Wolf shrinkage towards ``mu * I`` from sums over ``n`` centred samples x_i [D]:
    ``scatter`` = Σ x_i x_iᵀ [D, D] and ``fourth`` = Σ ||x_i||⁴ (the estimator as scikit-learn computes it)."""
    d = scatter.shape[0]
    trace = float(torch.diagonal(scatter).sum()) / n  # trace of the empirical covariance
    mu = trace / d
    delta_ = float((scatter**2).sum()) / n**2
    beta = (fourth / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


class GaussianHead(NormalModelHead):
    """Raw score: squared Mahalanobis distance ``(x - m)ᵀ P (x - m)`` to the normal snippets' mean ``m``, with
    ``P`` the inverse of their shrunk covariance ``(1 - s) S + s (tr S / D) I``.

    Args:
        in_dim: feature dimension D, taken from the feature store.
        shrinkage: ``ledoit_wolf`` (estimated) or a fixed ``s`` in [0, 1].
    Shapes: features [N, T, D], mask [N, T] (unused: scores are per snippet) → raw [N, T].
    Buffers: ``mean`` [D], ``precision`` [D, D], ``shrinkage`` (the ``s`` used).
    """

    trainable = False

    def __init__(
        self, in_dim: int, shrinkage: str | float = "ledoit_wolf", calibration_quantile: float = 0.95
    ):
        super().__init__(calibration_quantile)
        if shrinkage != "ledoit_wolf" and not (isinstance(shrinkage, int | float) and 0 <= shrinkage <= 1):
            raise VadmilError(
                f"gaussian shrinkage must be 'ledoit_wolf' or a number in [0, 1], got {shrinkage!r}"
            )
        self.shrinkage_rule = shrinkage
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("precision", torch.eye(in_dim))
        self.register_buffer("shrinkage", torch.zeros(()))

    @torch.no_grad()
    def fit_normal(self, snippets: SnippetSource) -> None:
        """Two passes in float64: the mean, then the centred scatter matrix and Σ ||x - m||⁴."""
        d = self.mean.numel()
        n, total = 0, torch.zeros(d, dtype=torch.float64)
        for x in snippets():  # statistics on the CPU in float64, whatever device the head is on
            n, total = n + len(x), total + x.detach().to("cpu", torch.float64).sum(0)
        if n < 2:
            raise VadmilError(f"the Gaussian head needs at least 2 normal training snippets, got {n}")
        mean = total / n
        scatter, fourth = torch.zeros(d, d, dtype=torch.float64), 0.0
        for x in snippets():
            c = x.detach().to("cpu", torch.float64) - mean
            scatter += c.T @ c
            fourth += float(((c * c).sum(1) ** 2).sum())
        s = (
            ledoit_wolf(n, scatter, fourth)
            if self.shrinkage_rule == "ledoit_wolf"
            else float(self.shrinkage_rule)
        )
        cov = scatter / n
        mu = float(torch.diagonal(cov).sum()) / d
        shrunk = (1.0 - s) * cov + s * mu * torch.eye(d, dtype=torch.float64)
        # A singular covariance (s = 0 with fewer snippets than dimensions, or constant features) has no inverse.
        shrunk += torch.eye(d, dtype=torch.float64) * 1e-9 * max(mu, 1e-12)
        self.mean.copy_(mean)
        self.precision.copy_(torch.linalg.inv(shrunk))
        self.shrinkage.fill_(s)

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        c = features - self.mean
        return ((c @ self.precision) * c).sum(-1)

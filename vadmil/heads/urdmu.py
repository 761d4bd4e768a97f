"""UR-DMU, Zhou et al., AAAI 2023: GL-MHSA transformer, dual memory units and the normal-uncertainty branch.

Follows the official code (github.com/henrryzh1/UR-DMU, ``model.py``, ``translayer.py``, ``memory.py``); every
place where we had to choose is an argument (docs/heads.md, UR-DMU). Label-dependent parts of the official
training forward (which memory reads are sampled, which snippets feed the triplet) live in the losses
(:mod:`vadmil.losses.memory`); the head computes every read for every bag and returns them in ``aux``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vadmil.errors import check_choice
from vadmil.heads.output import HeadOutput
from vadmil.heads.temporal import MaskedConv1d, full_mask

LOCAL_NORMS = ("code", "rows")


def local_affinity(mask: torch.Tensor, norm: str = "code") -> torch.Tensor:
    """The GL-MHSA local (distance) attention exp(−|i − j| / e) over each video's real snippets.

    ``norm="code"``: the official ``attn2 / attn2.sum(-1)`` broadcasts the [T] row sums over the last axis, so
    entry (i, j) is divided by the sum of row j (= column j: the matrix is symmetric); rows do not sum to 1.
    ``norm="rows"``: each row sums to 1. Sums run over real snippets only, so padding changes nothing.
    Shapes: mask [N, T] → [N, T, T] (zero at padded keys).
    """
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device, dtype=torch.float32)
    base = torch.exp(-(pos[None, :] - pos[:, None]).abs() / math.e)  # [T, T]
    real = mask.to(base.dtype)
    a = base[None] * real[:, None, :] * real[:, :, None]  # only pairs of real snippets
    sums = a.sum(dim=-1).clamp_min(1e-12)  # [N, T]: row sums (= column sums)
    return a / (sums[:, None, :] if norm == "code" else sums[:, :, None])


class GlobalLocalAttention(nn.Module):
    """GL-MHSA: multi-head softmax attention (q, k, v) beside a fixed local attention on a fourth projection t.

    Linear(D → 4·H·Dh, no bias) → [softmax(q kᵀ / √Dh) v ‖ A_local t] per head → Linear(2·H·Dh → D) → Dropout.
    Padded snippets are never keys. Shapes: x [N, T, D], mask [N, T] → [N, T, D].
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 128, dropout: float = 0.5,
                 local_norm: str = "code"):  # fmt: skip
        super().__init__()
        check_choice("UR-DMU local_norm", local_norm, LOCAL_NORMS)
        self.heads, self.scale, self.local_norm = heads, dim_head**-0.5, local_norm
        inner = heads * dim_head
        self.to_qkvt = nn.Linear(dim, 4 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(2 * inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, local: torch.Tensor | None = None) -> torch.Tensor:
        """``local``: the [N, T, T] local affinity if already computed for this mask (shared by the layers)."""
        n, t, _ = x.shape
        q, k, v, loc = (
            part.reshape(n, t, self.heads, -1).transpose(1, 2) for part in self.to_qkvt(x).chunk(4, dim=-1)
        )  # each [N, H, T, Dh]
        dots = (q @ k.transpose(-1, -2)) * self.scale
        dots = dots.masked_fill(~mask[:, None, None, :], torch.finfo(dots.dtype).min)
        glob = dots.softmax(dim=-1) @ v
        if local is None:
            local = local_affinity(mask, self.local_norm)
        local = local.to(x.dtype)[:, None] @ loc
        out = torch.cat([glob, local], dim=-1).transpose(1, 2).reshape(n, t, -1)
        return self.to_out(out)


class TransformerEncoder(nn.Module):
    """Pre-norm transformer: per layer x += GL-MHSA(LN(x)); x += FFN(LN(x)), FFN = Linear→GELU→Dropout→Linear→Dropout.

    Shapes: x [N, T, D], mask [N, T] → [N, T, D].
    """

    def __init__(self, dim: int, depth: int = 2, heads: int = 4, dim_head: int = 128, mlp_dim: int = 512,
                 dropout: float = 0.5, local_norm: str = "code"):  # fmt: skip
        super().__init__()
        self.attn = nn.ModuleList(
            GlobalLocalAttention(dim, heads, dim_head, dropout, local_norm) for _ in range(depth)
        )
        self.attn_norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.ff = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, mlp_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(mlp_dim, dim),
                nn.Dropout(dropout),
            )  # fmt: skip
            for _ in range(depth)
        )
        self.ff_norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        local = local_affinity(mask, self.attn[0].local_norm) if len(self.attn) else None  # mask-only: shared
        for attn, attn_norm, ff, ff_norm in zip(
            self.attn, self.attn_norm, self.ff, self.ff_norm, strict=True
        ):
            x = x + attn(attn_norm(x), mask, local)
            x = x + ff(ff_norm(x))
        return x


class MemoryUnit(nn.Module):
    """A memory of ``slots`` learned prototypes [K, D], read by sigmoid attention.

    att = σ(x Mᵀ / √D) [N, T, K]; the snippet's memory score is the mean of its top-(K // 16 + 1) attentions;
    the read-out is att · M. Memory init: uniform(±1/√D) (the code's).
    Shapes: x [N, T, D] → score [N, T], read [N, T, D].
    """

    def __init__(self, slots: int = 60, dim: int = 512, k_divisor: int = 16):
        super().__init__()
        self.memory = nn.Parameter(torch.empty(slots, dim).uniform_(-(dim**-0.5), dim**-0.5))
        self.k = min(slots, slots // k_divisor + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att = torch.sigmoid(x @ self.memory.T / math.sqrt(self.memory.shape[1]))
        return att.topk(self.k, dim=-1).values.mean(dim=-1), att @ self.memory


class URDMUHead(nn.Module):
    """UR-DMU's network.

    Conv1d(D→dim, k3)+ReLU embedding → GL-MHSA transformer (x) → abnormal and normal memories read x. The
    uncertainty branch maps a read r to μ = W_μ r and log σ² = W_σ r. Scorer on [x ‖ read] :
    Linear(2·dim→hidden)+ReLU → Linear(hidden→1) → sigmoid.

    ``scores`` use read = μ(abnormal read) + μ(normal read) (the code's test path, and its training path for
    abnormal videos). While training, ``aux["normal_scores"]`` use μ(abnormal read) + z with z ~ N(μ, σ²) of the
    normal read (the code's training path for normal videos); the losses pick per bag by label.

    Args:
        in_dim: feature dimension D (the store's; the official features are 1024-d I3D).
    Shapes: features [N, T, D], mask [N, T] → scores, logits [N, T]; features (the embedding x) [N, T, dim];
        aux (training only): abnormal_attention, normal_attention, normal_scores [N, T]; abnormal_read (μ),
        normal_read (sampled z), normal_mu, normal_logvar [N, T, dim].
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 512,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 128,
        mlp_dim: int = 512,
        dropout: float = 0.5,
        slots: tuple[int, int] = (60, 60),
        scorer_hidden: int = 128,
        local_norm: str = "code",
        sample_normal: bool = True,
    ):
        super().__init__()
        abnormal_slots, normal_slots = slots
        self.embed = MaskedConv1d(in_dim, dim, 3)
        self.encoder = TransformerEncoder(dim, depth, heads, dim_head, mlp_dim, dropout, local_norm)
        self.abnormal_memory = MemoryUnit(abnormal_slots, dim)
        self.normal_memory = MemoryUnit(normal_slots, dim)
        self.encoder_mu, self.encoder_var = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scorer = nn.Sequential(nn.Linear(2 * dim, scorer_hidden), nn.ReLU(), nn.Linear(scorer_hidden, 1))
        self.sample_normal = sample_normal

    def _logits(self, x: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
        return self.scorer(torch.cat([x, read], dim=-1)).squeeze(-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        mask = full_mask(features, mask)
        x = torch.relu(self.embed(features.transpose(1, 2), mask)).transpose(1, 2)
        x = self.encoder(x, mask)
        a_att, a_read = self.abnormal_memory(x)
        n_att, n_read = self.normal_memory(x)
        a_mu, n_mu = self.encoder_mu(a_read), self.encoder_mu(n_read)
        logits = self._logits(x, a_mu + n_mu)
        out = HeadOutput(scores=torch.sigmoid(logits), logits=logits, features=x)
        if not self.training:
            return out
        n_logvar = self.encoder_var(n_read)
        z = n_mu + torch.randn_like(n_mu) * torch.exp(0.5 * n_logvar) if self.sample_normal else n_mu
        out.aux = {
            "abnormal_attention": a_att, "normal_attention": n_att,
            "normal_scores": torch.sigmoid(self._logits(x, a_mu + z)),
            "abnormal_read": a_mu, "normal_read": z, "normal_mu": n_mu, "normal_logvar": n_logvar,
        }  # fmt: skip
        return out

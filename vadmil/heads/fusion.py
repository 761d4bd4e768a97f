"""Fusing feature streams (``data.fusion``; the streams are read concatenated, see :mod:`vadmil.data.streams`).

- ``early``: the head sees the concatenated features [N, T, sum of dims] — any head, sized from the streams. This
  is HL-Net's multimodal input (RGB 1024 + VGGish 128 = 1152 per snippet; Wu et al., ECCV 2020).
- ``late``: one head per stream, each sized to its stream and fed its slice of the features, and their outputs
  fused per snippet: logits averaged when every head has them (scores = sigmoid of the mean logit), else scores
  averaged; magnitudes, raw scores and a head's own ``aux`` tensors averaged (``aux`` of differing widths and
  embeddings concatenated) — so every loss sees one ordinary
  :class:`~vadmil.heads.output.HeadOutput`. For the unsupervised heads the fused raw score (the mean of the
  streams' raw scores) is calibrated as one, and statistics heads fit each stream on its own slice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from vadmil.heads.normality import NormalModelHead, SnippetSource
from vadmil.heads.output import HeadOutput


def _mean(values: list[torch.Tensor | None]) -> torch.Tensor | None:
    return torch.stack(values).mean(0) if all(v is not None for v in values) else None


def _fuse_aux(auxes: list[dict | None]) -> dict | None:
    """A head's own loss tensors (``aux``): averaged where the streams' shapes agree, else concatenated on the last
    axis (per-snippet embeddings of stream-sized widths)."""
    if any(a is None for a in auxes):
        return None
    out = {}
    for name in set.intersection(*(set(a) for a in auxes)):
        values = [a[name] for a in auxes]
        same = all(v.shape == values[0].shape for v in values)
        out[name] = torch.stack(values).mean(0) if same else torch.cat(values, dim=-1)
    return out


def fuse_outputs(outs: list[HeadOutput]) -> HeadOutput:
    """One output from per-stream outputs of the same bags (see the module's rule)."""
    logits = _mean([o.logits for o in outs])
    scores = torch.sigmoid(logits) if logits is not None else _mean([o.scores for o in outs])
    features = [o.features for o in outs]
    return HeadOutput(
        scores=scores,
        logits=logits,
        magnitudes=_mean([o.magnitudes for o in outs]),
        features=torch.cat(features, dim=-1) if all(f is not None for f in features) else None,
        raw=_mean([o.raw for o in outs]),
        aux=_fuse_aux([o.aux for o in outs]),
    )


class _Streams:
    """Per-stream heads over slices of the last feature axis."""

    def _init_streams(self, heads: Mapping[str, nn.Module], dims: Mapping[str, int]) -> None:
        self.heads = nn.ModuleDict(dict(heads))
        self.dims = {name: int(d) for name, d in dims.items()}

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(features, list(self.dims.values()), dim=-1)


class LateFusionHead(_Streams, nn.Module):
    """Late fusion of MIL heads. Shapes: features [N, T, sum of dims], mask [N, T] → fused output [N, T]."""

    def __init__(self, heads: Mapping[str, nn.Module], dims: Mapping[str, int]):
        nn.Module.__init__(self)
        self._init_streams(heads, dims)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> HeadOutput:
        return fuse_outputs(
            [head(x, mask) for head, x in zip(self.heads.values(), self.split(features), strict=True)]
        )


class LateFusionNormalHead(_Streams, NormalModelHead):
    """Late fusion of unsupervised heads: raw = mean of the streams' raw scores, calibrated once."""

    def __init__(self, heads: Mapping[str, NormalModelHead], dims: Mapping[str, int]):
        first = next(iter(heads.values()))
        NormalModelHead.__init__(self, first.calibration.quantile)
        self._init_streams(heads, dims)

    @property
    def trainable(self) -> bool:
        return all(h.trainable for h in self.heads.values())

    def raw_scores(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pairs = zip(self.heads.values(), self.split(features), strict=True)
        return torch.stack([head.raw_scores(x, mask) for head, x in pairs]).mean(0)

    def fit_normal(self, snippets: SnippetSource) -> None:
        for i, head in enumerate(self.heads.values()):
            head.fit_normal(self._slice(snippets, i))

    def _slice(self, snippets: SnippetSource, i: int) -> Callable:
        return lambda: (self.split(chunk)[i] for chunk in snippets())


def build_head(make: Callable[[int], nn.Module], dims: Mapping[str, int], fusion: str = "early") -> nn.Module:
    """The head for streams ``dims`` (name → dim, in feature order): ``make(in_dim)`` builds one head (e.g. the
    model's head config instantiated with ``in_dim``)."""
    if fusion == "early" or len(dims) == 1:
        return make(sum(dims.values()))
    heads = {name: make(dim) for name, dim in dims.items()}
    if all(isinstance(h, NormalModelHead) for h in heads.values()):
        return LateFusionNormalHead(heads, dims)
    return LateFusionHead(heads, dims)

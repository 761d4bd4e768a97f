"""Helpers shared by the losses: bag masks and label splits."""

from __future__ import annotations

import torch

from vadmil.heads.output import HeadOutput


def bag_mask(out: HeadOutput, batch: dict) -> torch.Tensor:
    """Valid-snippet mask [B, T] (all True when the batch carries none)."""
    mask = batch.get("mask")
    return torch.ones_like(out.video_scores, dtype=torch.bool) if mask is None else mask.bool()


def bag_max(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max score over the valid snippets of each bag: [B, T] → [B]."""
    return scores.masked_fill(~mask, float("-inf")).amax(dim=1)


def abnormal(batch: dict) -> torch.Tensor:
    """Boolean [B]: which bags are abnormal."""
    return batch["label"] > 0.5

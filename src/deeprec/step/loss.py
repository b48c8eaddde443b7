"""Masked mean squared error (eq. 1 of the paper) with explicit masks.

A rating of 0 is a rating: which entries count is given by the mask, never by the value.
"""

from __future__ import annotations

import torch


def masked_sse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over entries where mask is 1."""
    diff = (pred - target) * mask
    return (diff * diff).sum()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MMSE = sum(mask * (pred - target)^2) / sum(mask); RMSE = sqrt(MMSE)."""
    count = mask.sum().clamp_min(1.0)
    return masked_sse(pred, target, mask) / count


def unobserved_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where mask is 0 (distillation: `target` is a
    teacher's dense prediction there; the observed entries keep the ratings' loss)."""
    return masked_mse(pred, target, 1.0 - mask)

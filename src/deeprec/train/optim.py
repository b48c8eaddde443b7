"""Optimizers and learning-rate schedules by config name."""

from __future__ import annotations

import torch

from deeprec.train.config import TrainConfig


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """compute=fast uses the fused (one kernel over all tensors) variants where torch has them."""
    params = list(params)
    fast = {"fused": True} if config.compute == "fast" else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **fast,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fast)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay, **fast)
    foreach = {"foreach": True} if fast else {}  # no fused RMSprop in torch
    return torch.optim.RMSprop(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        **foreach,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch schedule; 'multistep' halves (lr_gamma) the rate at each milestone epoch."""
    if config.lr_schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.lr_milestones, gamma=config.lr_gamma
        )
    return None

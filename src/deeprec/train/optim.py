"""Optimizers and learning-rate schedules by config name."""

from __future__ import annotations

import torch

from deeprec.train.config import TrainConfig


def param_groups(params, config: TrainConfig) -> list[dict]:
    """Weight decay (an L2 penalty weight_decay/2 * ||W||^2 added to the loss, as coupled
    decay) on the weight matrices; on the biases only with `decay_biases` (the reference
    code decays everything; I-AutoRec and most practice leave biases free, which matters
    when the output biases must carry the rating mean)."""
    params = list(params)
    if config.decay_biases or config.weight_decay == 0.0:
        return [{"params": params}]
    matrices = [p for p in params if p.dim() >= 2]
    vectors = [p for p in params if p.dim() < 2]
    groups = [{"params": matrices}]
    if vectors:
        groups.append({"params": vectors, "weight_decay": 0.0})
    return groups


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """compute=fast uses the fused (one kernel over all tensors) variants where torch has them."""
    params = param_groups(params, config)
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

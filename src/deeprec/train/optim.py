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
    if config.weight_decay == 0.0:
        return [{"params": params}]
    decayed = {id(p) for p in decayed_parameters(params, config)}
    matrices = [p for p in params if id(p) in decayed]
    vectors = [p for p in params if id(p) not in decayed]
    groups = [{"params": matrices}]
    if vectors:
        groups.append({"params": vectors, "weight_decay": 0.0})
    return groups


def decayed_parameters(params, config: TrainConfig) -> list[torch.Tensor]:
    """The tensors weight_decay applies to: the weight matrices (every tensor with
    `decay_biases`), never the kernel vectors of weight_kernel_dim (marked by the model)."""
    params = [p for p in params if not getattr(p, "deeprec_no_decay", False)]
    if config.decay_biases:
        return params
    return [p for p in params if p.dim() >= 2]


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """compute=fast uses the fused (one kernel over all tensors) variants where torch has them."""
    if config.optimizer == "lbfgs":
        # full-batch quasi-Newton; no per-group options, so the L2 and kernel penalties are
        # part of the loss (train/step.py lbfgs_step) instead of weight_decay here
        return torch.optim.LBFGS(
            list(params),
            lr=config.lr,
            max_iter=config.lbfgs_iterations,
            history_size=10,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
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

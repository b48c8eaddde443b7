"""Optimizers: weight decay is an L2 penalty on the weight matrices (biases only if asked)."""

from __future__ import annotations

import copy

import pytest
import torch

from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
from deeprec.train.optim import build_optimizer, build_scheduler


@pytest.mark.parametrize("decay_biases", [False, True])
def test_weight_decay_equals_an_l2_term_in_the_loss(decay_biases: bool) -> None:
    torch.manual_seed(0)
    model = AutoEncoder(6, [4], activation="tanh")
    manual = copy.deepcopy(model)
    wd, lr = 0.3, 0.1
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, lr=lr, weight_decay=wd,
                      decay_biases=decay_biases)  # fmt: skip
    opt = build_optimizer(model.parameters(), cfg)
    x = torch.rand(3, 6)
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    penalised = [p for p in manual.parameters() if decay_biases or p.dim() == 2]
    loss = manual(x).pow(2).mean() + wd / 2 * sum(p.pow(2).sum() for p in penalised)
    grads = torch.autograd.grad(loss, list(manual.parameters()))
    with torch.no_grad():
        for p, g in zip(manual.parameters(), grads, strict=True):
            p -= lr * g
    for a, b in zip(model.parameters(), manual.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad", "rmsprop"])
def test_every_optimizer_builds_and_steps(name: str) -> None:
    model = AutoEncoder(5, [3])
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer=name, weight_decay=0.01))
    before = model.encoder_weights[0].detach().clone()
    model(torch.rand(2, 5)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.encoder_weights[0])


def test_multistep_schedule_halves_at_milestones() -> None:
    model = AutoEncoder(5, [3])
    cfg = TrainConfig(optimizer="sgd", lr=0.4, lr_schedule="multistep", lr_milestones=[2, 3])
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.4, 0.4, 0.2, 0.1]
    assert build_scheduler(opt, TrainConfig()) is None

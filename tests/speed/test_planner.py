"""The output-strategy planner: probe rates first, then what real steps measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.fast_step import FastNet, FastStep, Planner, _work


def small_batch():
    rng = np.random.default_rng(0)
    mask = rng.random((16, 40)) < 0.3
    mask[:, 0] = True
    rows, cols = np.nonzero(mask)
    values = rng.integers(1, 6, size=rows.shape[0]).astype(np.float32)
    matrix = CSRMatrix.from_coo(rows, cols, values, (16, 40))
    return row_batch(matrix, np.arange(16)).prepare()


def planner_with_probe_rates(rates: dict[str, float], **kw) -> tuple[Planner, object]:
    torch.manual_seed(0)
    net = FastNet(AutoEncoder(40, [8, 6], activation="selu"))
    planner = Planner(net, refeed=False, **kw)
    # probe rates as if timed: per work unit, input strategies equal
    planner.rates = {**rates, "input-dense": 1.0, "input-sparse": 1.0}
    return planner, small_batch()


def seconds_for(planner: Planner, strategy: str, batch, rate: float) -> float:
    return rate * _work(strategy, batch, planner.net.out_width())


def test_probe_rates_choose_until_real_steps_disagree(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    monkeypatch.delenv("DEEPREC_INPUT_STRATEGY", raising=False)
    probe = {"dense": 10.0, "sparse": 2.0, "union": 10.0, "gather": 1.0}
    planner, batch = planner_with_probe_rates(probe)
    cost = {s: probe[s] * _work(s, batch, planner.net.out_width()) for s in probe}
    first = min(cost, key=cost.get)
    runner_up = sorted(cost, key=cost.get)[1]
    assert planner.choose(batch)[1] == first
    # the real steps are 10x slower than the probe said: the runner-up is tried next
    planner.observe(first, seconds_for(planner, first, batch, probe[first] * 10), batch)
    assert planner.choose(batch)[1] == runner_up
    # and it is as fast as its probe said: it stays chosen
    for _ in range(3):
        planner.observe(runner_up, seconds_for(planner, runner_up, batch, probe[runner_up]), batch)
        assert planner.choose(batch)[1] == runner_up
    assert planner.counts == {first: 1, runner_up: 4}


def test_observed_rate_is_the_median_of_the_last_few(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    planner, batch = planner_with_probe_rates(
        {"dense": 1.0, "sparse": 1.0, "union": 1.0, "gather": 1.0}
    )
    rates = [5.0, 1.0, 100.0, 2.0, 3.0, 4.0, 6.0]  # one outlier among the last five
    for r in rates:
        planner.observe("sparse", seconds_for(planner, "sparse", batch, r), batch)
    assert len(planner.observed["sparse"]) == Planner.OBSERVED
    assert planner.rate("sparse") == pytest.approx(sorted(rates[-5:])[2])
    assert planner.rate("gather") == 1.0  # never observed: the probe rate


def test_a_pinned_strategy_ignores_observations(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    planner, batch = planner_with_probe_rates(
        {"dense": 1.0, "sparse": 1.0, "union": 1.0, "gather": 1.0}, output="dense"
    )
    planner.observe("dense", 1e6, batch)
    assert planner.observed == {}
    assert planner.choose(batch)[1] == "dense"


def test_training_steps_feed_the_planner(monkeypatch):
    monkeypatch.delenv("DEEPREC_OUTPUT_STRATEGY", raising=False)
    monkeypatch.delenv("DEEPREC_INPUT_STRATEGY", raising=False)
    torch.manual_seed(0)
    model = AutoEncoder(40, [8, 6], activation="selu")
    step = FastStep(model, torch.optim.SGD(model.parameters(), lr=0.01))
    batch = small_batch()
    for _ in range(3):
        step(batch)
    observed = step.planner.observed
    assert sum(len(v) for v in observed.values()) == 3
    assert set(observed) <= set(step.planner.counts)
    assert all(r > 0 for v in observed.values() for r in v)

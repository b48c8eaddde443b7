"""The strategy planner: the config's choice, or a fixed cost model of the batch's shape."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.kernels import gather_dot
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastNet, FastStep
from deeprec.step.planner import Planner
from deeprec.train.config import TrainConfig

from .batches import random_batch


def planner(n_items: int, hidden: list[int], refeed: bool = False, **choice: str) -> Planner:
    torch.manual_seed(0)
    return Planner(FastNet(AutoEncoder(n_items, hidden)), refeed=refeed, **choice)


def shaped_batch(n_rows: int, n_cols: int, per_row: int):
    """`per_row` distinct ratings in every row (ML-1M subset: ~146 of 3,615 items)."""
    rng = np.random.default_rng(0)
    cols = np.concatenate([rng.choice(n_cols, per_row, replace=False) for _ in range(n_rows)])
    rows = np.repeat(np.arange(n_rows), per_row)
    values = np.full(rows.shape[0], 3.0, np.float32)
    matrix = CSRMatrix.from_coo(rows, cols, values, (n_rows, n_cols))
    return row_batch(matrix, np.arange(n_rows)).prepare()


def test_choices_never_read_the_clock(monkeypatch) -> None:
    batch = random_batch(16, 40, seed=0)
    expected = planner(40, [8, 6]).choose(batch)

    def no_clock() -> float:
        raise AssertionError("the planner timed something")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    monkeypatch.setattr(time, "monotonic", no_clock)
    assert planner(40, [8, 6]).choose(batch) == expected


def test_benchmark_shapes_get_the_strategies_measured_fastest_there(monkeypatch) -> None:
    """ML-1M subset shape (128 users x 3,615 items, 146 ratings each, width 512): the
    timing planner chose gather without re-feeding and sparse with it, sparse input
    (docs/results/train_speed.md); the cost model agrees, compiled gather or not."""
    monkeypatch.setattr(gather_dot, "compiled_for", lambda w: True)
    batch = shaped_batch(128, 3615, 146)
    assert planner(3615, [512, 64]).choose(batch) == ("sparse", "gather")
    assert planner(3615, [512, 64], refeed=True).choose(batch) == ("sparse", "sparse")


def test_a_dense_small_batch_gets_dense_products() -> None:
    """16 users x 40 items at ~30%: the dense GEMMs do less work than the gathers."""
    assert planner(40, [8, 6]).choose(random_batch(16, 40, seed=0)) == ("dense", "dense")


@pytest.mark.parametrize("compiled", [False, True])
def test_eager_gather_is_not_offered_when_a_batch_has_more_ratings_than_items(
    monkeypatch, compiled: bool
) -> None:
    """The eager gather materialises (nnz x width) tensors; compiled, it competes."""
    monkeypatch.setattr(gather_dot, "compiled_for", lambda w: compiled)
    batch = shaped_batch(128, 400, 5)  # 640 ratings over 400 items: gather is cheapest
    assert batch.nnz >= batch.n_cols
    assert planner(400, [32, 16]).choose(batch)[1] == ("gather" if compiled else "sparse")
    few = shaped_batch(16, 400, 5)  # 80 ratings over 400 items: offered either way
    assert planner(400, [32, 16]).choose(few)[1] == "gather"


def test_a_configured_strategy_is_used_for_every_batch() -> None:
    plan = planner(40, [8, 6], output="union", inputs="sparse")
    for seed in range(3):
        assert plan.choose(random_batch(16, 40, seed=seed)) == ("sparse", "union")
    assert plan.counts == {"union": 3}


def test_impossible_choices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not possible"):
        planner(40, [8, 6], refeed=True, output="gather")
    with pytest.raises(ConfigError, match="input strategy"):
        planner(40, [8, 6], inputs="union")
    with pytest.raises(ConfigError, match="output_strategy"):
        TrainConfig(refeed_steps=1, output_strategy="gather")
    with pytest.raises(ConfigError, match="input_strategy"):
        TrainConfig(input_strategy="fastest")


def test_the_config_reaches_the_fast_step() -> None:
    from deeprec.train.step import make_step

    torch.manual_seed(0)
    model = AutoEncoder(40, [8, 6])
    config = TrainConfig(output_strategy="sparse", input_strategy="dense", optimizer="sgd")
    step = make_step(model, torch.optim.SGD(model.parameters(), lr=0.01), config)
    assert isinstance(step, FastStep)
    assert step.planner.choose(random_batch(16, 40, seed=0)) == ("dense", "sparse")
    assert config.to_dict()["output_strategy"] == "sparse"  # recorded with the run


def test_retired_options_in_old_run_configs() -> None:
    old = {**TrainConfig().to_dict(), "lazy_updates": False, "reuse_freed_memory": True}
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ConfigError, match="lazy_updates was removed"):
        TrainConfig.from_dict({**old, "lazy_updates": True})

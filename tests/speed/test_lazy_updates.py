"""lazy_updates (opt-in, changes the math): only the rows a batch rated move; on those rows
the update is momentum SGD's, and with every row rated it is the dense update."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train.config import TrainConfig
from deeprec.train.fast_step import FastStep

from .test_bf16_training import low_rank_data, train_once

N_ROWS, N_COLS = 40, 30


def ratings(seed: int, cols_used: int) -> CSRMatrix:
    """Every row rates something; only the first `cols_used` columns are ever rated."""
    rng = np.random.default_rng(seed)
    mask = rng.random((N_ROWS, cols_used)) < 0.4
    mask[:, 0] = True
    mask[np.arange(cols_used) % N_ROWS, np.arange(cols_used)] = True  # every used column rated
    rows, cols = np.nonzero(mask)
    values = rng.integers(1, 6, size=rows.shape[0]).astype(np.float32)
    return CSRMatrix.from_coo(rows, cols, values, (N_ROWS, N_COLS))


def make_pair(precision: str = "fp32", wd: float = 0.01):
    torch.manual_seed(2)
    model = AutoEncoder(N_COLS, [12, 6], activation="selu", dropout=0.0)
    twin = copy.deepcopy(model)
    steps = []
    for m, lazy in ((model, True), (twin, False)):
        opt = torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9, weight_decay=wd)
        steps.append(
            FastStep(
                m,
                opt,
                precision=precision,
                lazy_updates=lazy,
                output_strategy="sparse",
                input_strategy="sparse",
            )
        )
    return (model, steps[0]), (twin, steps[1])


def item_rows(model: AutoEncoder) -> dict[str, torch.Tensor]:
    """The item-wide tensors, one row per item: first weight (transposed), output weight, bias."""
    return {
        "first": model.encoder_weights[0].detach().t(),
        "out": model.decoder_weights[-1].detach(),
        "bias": model.decoder_biases[-1].detach(),
    }


def test_with_every_item_rated_the_first_update_is_the_dense_one() -> None:
    (lazy_model, lazy_step), (dense_model, dense_step) = make_pair()
    batch = row_batch(ratings(0, N_COLS), np.arange(N_ROWS)).prepare()
    assert lazy_step(batch).loss == pytest.approx(dense_step(batch).loss, rel=1e-12)
    for (name, a), (_, b) in zip(
        lazy_model.named_parameters(), dense_model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7, msg=name)


def test_unrated_rows_stay_and_rated_rows_follow_momentum_sgd() -> None:
    (lazy_model, lazy_step), (dense_model, dense_step) = make_pair()
    first = row_batch(ratings(0, N_COLS), np.arange(N_ROWS)).prepare()
    lazy_step(first)
    dense_step(first)  # identical state after a step that rated every item (test above)
    partial = row_batch(ratings(1, 18), np.arange(N_ROWS)).prepare()  # items 18.. unrated
    before = {k: v.clone() for k, v in item_rows(lazy_model).items()}
    lazy_step(partial)
    dense_step(partial)
    after_lazy, after_dense = item_rows(lazy_model), item_rows(dense_model)
    for name in before:
        assert torch.equal(after_lazy[name][18:], before[name][18:]), name  # untouched
        assert not torch.equal(after_dense[name][18:], before[name][18:]), name  # dense moved
        torch.testing.assert_close(
            after_lazy[name][:18], after_dense[name][:18], rtol=1e-5, atol=1e-6, msg=name
        )


def test_bf16_copy_of_the_output_layer_stays_current() -> None:
    (lazy_model, lazy_step), _ = make_pair("bf16")
    for seed in range(3):
        lazy_step(row_batch(ratings(seed, 10 + 6 * seed), np.arange(N_ROWS)).prepare())
    mirror = lazy_step.net._mirror
    out_index = lazy_step.net._mirror_index[id(lazy_model.decoder_weights[-1])]
    assert not mirror.stale[out_index]
    assert torch.equal(
        mirror.copies[out_index], lazy_model.decoder_weights[-1].detach().to(torch.bfloat16)
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"refeed_steps": 1},
        {"constrained": True},
        {"optimizer": "adam"},
        {"compute": "reference"},
        {"momentum": 0.0},
    ],
)
def test_unsupported_combinations_are_config_errors(overrides) -> None:
    values = {"lazy_updates": True, "optimizer": "sgd", **overrides}
    with pytest.raises(ConfigError, match="lazy_updates"):
        TrainConfig(**values)


def test_trains_end_to_end_and_differs_from_dense() -> None:
    data = low_rank_data(4)
    lazy = train_once(data, compute="fast", lazy_updates=True)
    dense = train_once(data, compute="fast")
    assert lazy != dense
    assert abs(lazy[1] - dense[1]) < 0.1  # same ballpark after one epoch

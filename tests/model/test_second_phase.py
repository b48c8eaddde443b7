"""finetune_epochs without a global kernel: a second, plain phase at finetune_lr from the
first phase's best weights, early-stopped on validation, kept only when it gains there, and
replayed (both phase lengths) by the refit."""

from __future__ import annotations

import pytest
import torch

from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec
from deeprec.train.config import TrainConfig

from .model_data import split_frame, synthetic_frame

BASE = dict(hidden=[16], epochs=30, threads=1, seed=0, early_stopping=5)


@pytest.fixture(scope="module")
def small():
    return split_frame(synthetic_frame(n_users=150, n_items=60, seed=4))


@pytest.fixture(scope="module")
def first(small) -> DeepRec:
    return DeepRec(**BASE).fit(small)


def test_the_second_phase_continues_from_the_first_and_gains_on_validation(small, first):
    model = DeepRec(**BASE, finetune_epochs=20, finetune_lr=1e-4).fit(small)
    done = len(first.history_)
    assert [r.valid_rmse for r in model.history_[:done]] == [
        r.valid_rmse for r in first.history_
    ]  # the same first phase
    assert [r.epoch for r in model.history_] == list(range(1, len(model.history_) + 1))
    assert model.history_[done].lr == pytest.approx(1e-4)
    assert model.best_valid_rmse_ < first.best_valid_rmse_
    assert model.phase_best_epochs_ == [first.best_epoch_, model.best_epoch_ - done]
    assert model.best_valid_rmse_ == pytest.approx(model.score(small, "valid")["rmse"])


def test_a_second_phase_that_does_not_gain_leaves_the_first_phase_weights(small, first):
    model = DeepRec(**BASE, finetune_epochs=3, finetune_lr=1e-12).fit(small)
    assert model.phase_best_epochs_ == [first.best_epoch_, 0]
    assert model.best_valid_rmse_ == first.best_valid_rmse_
    for name, value in first.module_.state_dict().items():
        torch.testing.assert_close(model.module_.state_dict()[name], value, rtol=0, atol=0)


def test_the_refit_replays_both_phases(small):
    chosen = DeepRec(**BASE, finetune_epochs=20, finetune_lr=1e-4).fit(small)
    refitted = DeepRec(**BASE, finetune_epochs=20, finetune_lr=1e-4, refit=True).fit(small)
    assert refitted.refit_["epochs"] == chosen.phase_best_epochs_
    assert len(refitted.refit_history_) == sum(chosen.phase_best_epochs_)
    assert refitted.best_valid_rmse_ == chosen.best_valid_rmse_


def test_lbfgs_has_no_second_phase() -> None:
    with pytest.raises(ConfigError, match="finetune_epochs"):
        TrainConfig(optimizer="lbfgs", compute="reference", dropout=0.0, lr=1.0, finetune_epochs=5)

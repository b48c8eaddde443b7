"""The trainer's per-batch hook and the user subsample the recipes rely on."""

from __future__ import annotations

import math

import numpy as np
import torch

from deeprec.data.dataset import PreparedDataset
from deeprec.experiments.common import subsample_users, train_traced
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import OrientedData, Trainer, build_model


def test_batch_hook_sees_every_batch_and_sums_to_the_epoch_rmse(tiny_dataset) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    config = TrainConfig(hidden=[8], batch_size=10, epochs=2, dropout=0.0)
    torch.manual_seed(config.seed)
    data = OrientedData.from_dataset(dataset, "user")
    calls = []
    trainer = Trainer(
        build_model(config, data.train.shape[1]),
        config,
        data,
        on_batch_end=lambda epoch, index, step: calls.append((epoch, index, step.sse, step.count)),
    )
    result = trainer.fit()
    n_rows = int((data.train.row_lengths() > 0).sum())
    per_epoch = math.ceil(n_rows / 10)
    assert [(e, i) for e, i, _, _ in calls] == [(e, i) for e in (1, 2) for i in range(per_epoch)]
    for epoch, record in zip((1, 2), result.history, strict=True):
        sse = sum(c[2] for c in calls if c[0] == epoch)
        count = sum(c[3] for c in calls if c[0] == epoch)
        assert count == len(dataset.train)
        assert math.isclose(math.sqrt(sse / count), record.train_rmse, rel_tol=1e-9)


def test_traced_run_is_reproducible_and_scores_test(tiny_dataset) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    config = TrainConfig(hidden=[8], epochs=2, optimizer="adam", lr=0.01)
    a = train_traced(dataset, config, "a", record_batches=True)
    b = train_traced(dataset, config, "b", record_batches=True)
    assert a.batch_rmse == b.batch_rmse
    assert a.test_rmse == b.test_rmse and a.test_rmse is not None
    assert a.best_epoch in (1, 2)
    assert a.n_params == sum(p.numel() for p in build_model(config, dataset.n_items).parameters())


def test_subsample_keeps_a_seeded_fraction_of_users_with_all_their_ratings(tiny_dataset) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    half = subsample_users(dataset, 0.5, seed=3)
    again = subsample_users(dataset, 0.5, seed=3)
    assert np.array_equal(half.user_ids, again.user_ids)
    assert half.n_users == round(dataset.n_users * 0.5)
    assert set(half.user_ids.tolist()) <= set(dataset.user_ids.tolist())
    for name in ("train", "valid", "test"):
        sub = half.to_pandas(name)
        full = dataset.to_pandas(name)
        full = full[full.user.isin(half.user_ids) & full.item.isin(half.item_ids)]
        key = ["user", "item"]
        assert (
            sub.sort_values(key)
            .reset_index(drop=True)
            .equals(full.sort_values(key).reset_index(drop=True))
        )
    # every kept user keeps all their training ratings
    full_train = dataset.to_pandas("train")
    assert len(half.train) == int(full_train.user.isin(half.user_ids).sum())
    assert subsample_users(dataset, 1.0, seed=3) is dataset


def test_traced_run_honours_center_like_the_estimator(tiny_dataset) -> None:
    from deeprec.estimator import DeepRec

    dataset = PreparedDataset.load(tiny_dataset)
    for center in ("none", "bias"):
        config = TrainConfig(hidden=[8], epochs=2, optimizer="adam", lr=0.01, center=center)
        run = train_traced(dataset, config, center, keep_model=True)
        model = DeepRec.from_config(config).fit(dataset)
        assert run.best_valid_rmse == model.best_valid_rmse_
        assert run.test_rmse == model.score(dataset, "test")["rmse"]
        assert run.model.center == center


def test_a_diverged_traced_run_is_recorded(tiny_dataset) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    config = TrainConfig(hidden=[8], epochs=3, optimizer="sgd", lr=1e6, center="none")
    run = train_traced(dataset, config, "boom")
    assert run.diverged and "loss became" in run.diverged

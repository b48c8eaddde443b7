"""ema_decay: the model validation reads and training keeps is the exponential moving
average of the weights after every step (checked against the average computed by hand),
in the pre-training and in the global-kernel fine-tuning; resume keeps the average; bad
values are refused naming the key."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec
from deeprec.runs.training import resume_run, train_run
from deeprec.train.checkpoint import checkpoint_position, list_checkpoints
from deeprec.train.config import TrainConfig
from deeprec.train.global_finetune import global_kernel_of
from deeprec.train.trainer import OrientedData, Trainer, build_model

from .model_data import split_frame, synthetic_frame


@pytest.fixture(scope="module")
def small():
    return split_frame(synthetic_frame(n_users=90, n_items=40, seed=6))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("compute", ["fast", "reference"])
def test_the_kept_model_is_the_average_of_every_steps_weights(small, compute) -> None:
    """No validation: the last epoch's average is kept; it must equal avg_1 = w_1,
    avg_k = d avg_(k-1) + (1 - d) w_k over the weights after each step."""
    decay = 0.7
    config = TrainConfig(
        hidden=[12], epochs=3, batch_size=16, seed=1, threads=1, ema_decay=decay, compute=compute
    )
    data = OrientedData.from_dataset(small, "user")
    data.valid = data.valid.__class__.from_coo([], [], [], data.valid.shape)
    model = build_model(config, data.train.shape[1])
    seen: list[dict[str, torch.Tensor]] = []
    trainer = Trainer(model, config, data, on_batch_end=lambda *_: seen.append(_weights(model)))
    trainer.fit()
    assert len(seen) == 3 * int(np.ceil(len(trainer.train_rows) / 16)) > 3
    expected = dict(seen[0])
    for weights in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    kept = _weights(model)
    assert kept.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(kept[name], value, rtol=1e-5, atol=1e-6, msg=name)
    raw = seen[-1]
    assert any(not torch.equal(kept[k], raw[k]) for k in raw)  # not the last raw weights


def test_validation_reads_the_average(small) -> None:
    plain = DeepRec(hidden=[12], epochs=6, batch_size=16, seed=1, threads=1).fit(small)
    averaged = DeepRec(hidden=[12], epochs=6, batch_size=16, seed=1, threads=1, ema_decay=0.8)
    averaged.fit(small)
    assert averaged.best_valid_rmse_ == pytest.approx(averaged.score(small, "valid")["rmse"])
    assert [r.train_rmse for r in averaged.history_] == [r.train_rmse for r in plain.history_]
    assert [r.valid_rmse for r in averaged.history_] != [r.valid_rmse for r in plain.history_]


def test_fine_tuning_keeps_the_average_with_its_own_global_kernel(small) -> None:
    model = DeepRec(
        hidden=[8],
        activation="sigmoid",
        orientation="item",
        center="none",
        standardize=False,
        dropout=0.0,
        compute="reference",
        epochs=4,
        batch_size=4096,
        lr=0.01,
        seed=3,
        global_kernel=3,
        finetune_epochs=5,
        early_stopping=0,
        ema_decay=0.6,
        threads=1,
    ).fit(small)
    module = model.module_
    train = OrientedData.from_dataset(small, "item").train
    x, _ = row_batch(train, np.arange(train.shape[0])).dense()
    torch.testing.assert_close(module.global_kernel_matrix, global_kernel_of(module, x))
    assert model.best_valid_rmse_ == pytest.approx(model.score(small, "valid")["rmse"])


def test_resume_mid_epoch_keeps_the_average(tmp_path) -> None:
    """A run resumed from a mid-epoch checkpoint ends with the same kept weights as the
    uninterrupted run (the average is in the checkpoint)."""
    from reliability.conftest import assert_same_tensors, best_weights, make_dataset

    prepared = make_dataset(tmp_path / "prepared")
    config = TrainConfig().with_overrides(
        [
            "epochs=3",
            "hidden=[16]",
            "batch_size=16",
            "threads=1",
            "ema_decay=0.9",
            "checkpoint_every_batches=4",
            "checkpoint_keep=100",
        ]
    )
    full = tmp_path / "full"
    train_run(prepared, config, full, progress=False, echo=lambda _m: None)
    start = next(
        c for c in list_checkpoints(full / "checkpoints") if checkpoint_position(c) == (2, 4)
    )
    again = tmp_path / "again"
    shutil.copytree(full, again, ignore=shutil.ignore_patterns("best", "summary.json"))
    for later in list_checkpoints(again / "checkpoints"):
        if later.name > start.name:
            later.unlink()
    resume_run(again, progress=False, echo=lambda _m: None)
    assert_same_tensors(best_weights(again), best_weights(full))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
        (
            {
                "ema_decay": 0.9,
                "optimizer": "lbfgs",
                "compute": "reference",
                "dropout": 0.0,
                "lr": 1.0,
            },
            "ema_decay",
        ),
    ],
)
def test_bad_ema_decay_is_refused_naming_the_key(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)

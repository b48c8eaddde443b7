"""DeepRec end to end on small synthetic data: orientation, reproducibility, save/load,
every row every epoch, checkpoint and training errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.base import load_model
from deeprec.data.dataset import PreparedDataset
from deeprec.errors import CheckpointError, ConfigError, TrainingError
from deeprec.estimator import DeepRec
from deeprec.runs.directory import RunDir
from deeprec.runs.training import train_run
from deeprec.train.config import TrainConfig

TINY = dict(hidden=[8, 4], epochs=3, batch_size=16, lr=0.01, dropout=0.2, seed=3)


def _transposed(dataset: PreparedDataset) -> PreparedDataset:
    frames = {}
    for name in ("train", "valid", "test"):
        df = dataset.to_pandas(name)
        frames[name] = df.rename(columns={"user": "item", "item": "user"})
    return PreparedDataset.from_tables(frames["train"], frames["valid"], frames["test"])


def _states_equal(a: DeepRec, b: DeepRec) -> bool:
    sa, sb = a.module.state_dict(), b.module.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_item_based_equals_user_based_on_the_transposed_matrix(dataset) -> None:
    # uncentred: the bias baseline's ridge strengths differ for users and items
    item_model = DeepRec(**TINY, orientation="item", center="none").fit(dataset)
    flipped = _transposed(dataset)
    user_model = DeepRec(**TINY, orientation="user", center="none").fit(flipped)
    assert _states_equal(item_model, user_model)
    assert [r.valid_rmse for r in item_model.history_] == [
        r.valid_rmse for r in user_model.history_
    ]
    test = dataset.to_pandas("test")
    a = item_model.predict(test["user"], test["item"], clip=False)
    b = user_model.predict(test["item"], test["user"], clip=False)
    np.testing.assert_array_equal(a, b)
    assert item_model.score(dataset)["rmse"] == user_model.score(flipped)["rmse"]


def test_seeded_run_is_bit_reproducible(dataset) -> None:
    a = DeepRec(**TINY).fit(dataset)
    b = DeepRec(**TINY).fit(dataset)
    assert _states_equal(a, b)
    assert [r.train_rmse for r in a.history_] == [r.train_rmse for r in b.history_]
    c = DeepRec(**{**TINY, "seed": 4}).fit(dataset)
    assert not _states_equal(a, c)


@pytest.mark.parametrize("orientation", ["user", "item"])
def test_save_load_round_trips_predictions_exactly(dataset, tmp_path, orientation) -> None:
    model = DeepRec(**TINY, orientation=orientation, constrained=True).fit(dataset)
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert (
        loaded.get_params()
        == {
            **model.get_params(),
            "hidden": list(model.hidden),
            "lr_milestones": list(model.lr_milestones),
        }
        or loaded.config() == model.config()
    )
    assert loaded.config() == model.config()
    test = dataset.to_pandas("test")
    users = np.concatenate([test["user"].to_numpy(), [999999]])  # plus one unknown user
    items = np.concatenate([test["item"].to_numpy(), [5]])
    np.testing.assert_array_equal(
        model.predict(users, items, clip=False), loaded.predict(users, items, clip=False)
    )
    assert model.score(dataset) == loaded.score(dataset)
    assert loaded.best_epoch_ == model.best_epoch_


def test_every_epoch_uses_every_row_including_the_last_partial_batch() -> None:
    """Each user rates one private item: its output bias moves only if the user's row is
    trained on, so after one epoch every private bias must have moved."""
    n_users, batch = 37, 8  # 4 full batches and a last one of 5
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        rows.append((u, 1000 + u, float(rng.integers(1, 6))))  # the private item
        for i in rng.choice(10, size=3, replace=False):
            rows.append((u, int(i), float(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    for orientation in ("user",):
        model = DeepRec(
            hidden=[4],
            epochs=1,
            batch_size=batch,
            optimizer="sgd",
            momentum=0.0,
            lr=0.1,
            dropout=0.0,
            orientation=orientation,
        ).fit(frame)
        private = np.searchsorted(model.item_ids_, 1000 + np.arange(n_users))
        out_bias = model.module.decoder_biases[-1].detach().numpy()
        assert np.count_nonzero(out_bias[private]) == n_users


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_good_checkpoints(dataset, tmp_path) -> None:
    data_dir = dataset.save(tmp_path / "data")
    # epoch 1 trains normally; the schedule multiplies lr by 1e12 from epoch 2 on: it diverges
    config = TrainConfig(
        hidden=[8],
        epochs=4,
        batch_size=8,
        optimizer="sgd",
        lr=0.01,
        activation="identity",
        dropout=0.0,
        lr_schedule="multistep",
        lr_milestones=[1],
        lr_gamma=1e12,
    )
    with pytest.raises(TrainingError, match=r"epoch 2, batch \d+/\d+"):
        train_run(data_dir, config, tmp_path / "run", progress=False, echo=lambda _: None)
    run = RunDir(tmp_path / "run")
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    model = load_model(run.best)
    test = dataset.to_pandas("test")
    pred = model.predict(test["user"], test["item"], clip=False)
    assert np.isfinite(pred).all()
    # the training checkpoint (replaces RUN/last/) is the end of epoch 1, finite
    from deeprec.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run.path / "checkpoints")
    assert (ckpt.epoch, ckpt.batch) == (2, 0)
    assert all(torch.isfinite(t).all() for k, t in ckpt.tensors.items() if k.startswith("model/"))


def test_nan_loss_leaves_the_estimator_at_its_best_weights(dataset) -> None:
    model = DeepRec(
        hidden=[8],
        epochs=3,
        batch_size=8,
        optimizer="sgd",
        lr=0.01,
        activation="identity",
        dropout=0.0,
        lr_schedule="multistep",
        lr_milestones=[1],
        lr_gamma=1e12,
    )
    with pytest.raises(TrainingError, match="epoch 2"):
        model.fit(dataset)
    assert all(torch.isfinite(p).all() for p in model.module.parameters())


def test_huge_learning_rate_raises_training_error(dataset) -> None:
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1, batch 2/"):
        DeepRec(
            hidden=[8], optimizer="sgd", lr=1e12, activation="identity", epochs=2, batch_size=8
        ).fit(dataset)


def test_bad_hyper_parameters_raise_config_error_before_training(dataset) -> None:
    with pytest.raises(ConfigError, match="hidden"):
        DeepRec(hidden=[]).fit(dataset)
    with pytest.raises(ConfigError, match="lr"):
        DeepRec(lr="fast").fit(dataset)
    with pytest.raises(ConfigError, match="orientation"):
        DeepRec(orientation="diagonal").fit(dataset)


def test_missing_checkpoint_is_a_clear_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not a saved deeprec model"):
        DeepRec.load(tmp_path / "nowhere")
    (tmp_path / "file.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickle"):
        DeepRec.load(tmp_path / "file.pt")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"hidden": [16, 4]}, "shapes do not match"),
        ({"hidden": [8]}, "does not match the architecture"),
        ({"constrained": True}, "does not match the architecture"),
        ({"orientation": "item"}, "shapes do not match"),
    ],
)
def test_mismatched_checkpoint_is_a_clear_checkpoint_error(dataset, tmp_path, change, fragment):
    DeepRec(**TINY).fit(dataset).save(tmp_path / "m")
    info_path = tmp_path / "m" / "model.json"
    info = json.loads(info_path.read_text())
    info["params"].update(change)
    info_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=fragment):
        DeepRec.load(tmp_path / "m")


@pytest.mark.parametrize("orientation", ["user", "item"])
def test_input_row_scale_trains_predicts_and_round_trips(dataset, tmp_path, orientation) -> None:
    """input_row_scale: fast and reference compute give the same model and predictions
    (float tolerance); save/load keeps the option and the predictions exactly."""
    from deeprec.train.evaluation import predict_rows

    kw = dict(TINY, orientation=orientation, center="none", input_row_scale=3.0, dropout=0.0)
    fast = DeepRec(**kw).fit(dataset)
    ref = DeepRec(**kw, compute="reference").fit(dataset)
    test = dataset.to_pandas("test")
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    np.testing.assert_allclose(
        fast.predict(users, items, clip=False), ref.predict(users, items, clip=False), atol=1e-4
    )
    rows = np.arange(fast.rows_.shape[0])
    torch.testing.assert_close(
        predict_rows(fast.module_, fast.rows_, rows, compute="fast"),
        predict_rows(fast.module_, fast.rows_, rows, compute="reference"),
    )
    plain = DeepRec(**{**kw, "input_row_scale": 0.0}).fit(dataset)
    assert not np.allclose(plain.predict(users, items), fast.predict(users, items))
    fast.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert loaded.input_row_scale == 3.0 and loaded.module_.input_row_scale == 3.0
    np.testing.assert_array_equal(
        loaded.predict(users, items, clip=False), fast.predict(users, items, clip=False)
    )


def test_rated_indicator_model_trains_and_round_trips(dataset, tmp_path) -> None:
    kw = dict(TINY, orientation="item", center="bias", rated_indicator=True, compute="reference")
    model = DeepRec(**kw).fit(dataset)
    assert model.module_.indicator_weight is not None
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert loaded.rated_indicator is True
    test = dataset.to_pandas("test")
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    np.testing.assert_array_equal(
        loaded.predict(users, items, clip=False), model.predict(users, items, clip=False)
    )
    plain = DeepRec(**{**kw, "rated_indicator": False}).fit(dataset)
    assert not np.allclose(plain.predict(users, items), model.predict(users, items))
    with pytest.raises(ConfigError, match="rated_indicator"):
        DeepRec(**{**kw, "compute": "fast"}).fit(dataset)

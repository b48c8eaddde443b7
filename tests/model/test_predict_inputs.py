"""Prediction-time inputs: a fitted DeepRec reads the validation ratings as inputs (issue 18).

The weights stay those chosen on validation; `predict_inputs="train+valid"` adds the
validation ratings to each input row, `predict_center="train+valid"` re-fits the centring
biases on train + validation. Test ratings must never become inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec.data.dataset import PreparedDataset
from deeprec.data.prediction_inputs import coo, merge_ratings
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError
from deeprec.estimator import DeepRec

SMALL = dict(hidden=[8], epochs=4, batch_size=16, seed=0, center="bias")
CHOICES = [("train", "train"), ("train+valid", "train"), ("train+valid", "train+valid")]


def _pairs(matrix: CSRMatrix) -> set[tuple[int, int]]:
    rows, cols, _ = coo(matrix)
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def _split_pairs(dataset: PreparedDataset, name: str) -> set[tuple[int, int]]:
    part = dataset.split(name)
    return set(zip(part.users.tolist(), part.items.tolist(), strict=True))


def _row_of(matrix: CSRMatrix, row: int) -> dict[int, float]:
    lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
    return dict(zip(matrix.indices[lo:hi].tolist(), matrix.values[lo:hi].tolist(), strict=True))


@pytest.mark.parametrize("orientation", ["user", "item"])
def test_inputs_hold_validation_ratings_when_asked_and_never_test(dataset, orientation) -> None:
    model = DeepRec(**SMALL, orientation=orientation).fit(dataset)
    train, valid, test = (_split_pairs(dataset, n) for n in ("train", "valid", "test"))
    assert valid and not valid & test  # the fixture's splits are disjoint and non-empty
    assert _pairs(model.valid_) == valid
    model.set_params(predict_inputs="train")
    assert _pairs(model.input_ratings()) == train
    model.set_params(predict_inputs="train+valid")
    inputs = model.input_ratings()
    assert _pairs(inputs) == train | valid
    assert not _pairs(inputs) & test
    # the rows the network reads are those ratings, centred, in the model's orientation
    rows = model.rows_ if orientation == "user" else model.rows_.transpose()
    assert _pairs(rows) == train | valid
    user, item = dataset.valid.users[0], dataset.valid.items[0]
    base = model._baseline(np.array([user]), np.array([item]))[0]
    want = (dataset.valid.ratings[0] - base) / model.output_scale
    assert _row_of(rows, int(user))[int(item)] == pytest.approx(want, abs=1e-5)


def test_predictions_follow_the_choice_and_ignore_test_ratings(dataset) -> None:
    model = DeepRec(**SMALL).fit(dataset)
    test = dataset.to_pandas("test")
    by_choice = {}
    for inputs, center in CHOICES:
        model.set_params(predict_inputs=inputs, predict_center=center)
        by_choice[inputs, center] = model.predict(test.user, test.item, clip=False)
    assert not np.allclose(by_choice[CHOICES[0]], by_choice[CHOICES[1]])
    assert not np.allclose(by_choice[CHOICES[1]], by_choice[CHOICES[2]])
    # the same fit on a copy whose test ratings are all changed predicts identically
    flipped = PreparedDataset(
        dataset.user_ids,
        dataset.item_ids,
        dataset.train,
        dataset.valid,
        type(dataset.test)(
            dataset.test.users, dataset.test.items, 6.0 - dataset.test.ratings, None
        ),
        meta=dataset.meta,
    )
    other = DeepRec(**SMALL).fit(flipped)  # the defaults: train+valid inputs and biases
    np.testing.assert_array_equal(
        other.predict(test.user, test.item, clip=False), by_choice[CHOICES[2]]
    )


def test_the_defaults_carve_validation_and_read_it_back_as_input(dataset) -> None:
    """DeepRec() without a validation split carves one from the training ratings; the
    carved ratings come back as inputs, so the inputs are exactly the given training. (With
    the default refit the chosen model is retrained on them all: no validation is kept.)"""
    given = PreparedDataset.from_tables(dataset.to_pandas("train"))
    refitted = DeepRec(seed=0).fit(given)
    assert refitted.valid_.nnz == 0 and _pairs(refitted.train_) == _split_pairs(given, "train")
    model = DeepRec(seed=0, refit=False).fit(given)
    assert model.selection_ is not None
    assert model.valid_.nnz > 0
    whole = {
        (int(u), int(i)): float(r)
        for u, i, r in zip(given.train.users, given.train.items, given.train.ratings, strict=True)
    }
    rows, cols, values = coo(model.input_ratings())
    got = {(int(u), int(i)): float(r) for u, i, r in zip(rows, cols, values, strict=True)}
    assert got == whole
    assert _pairs(model.train_) | _pairs(model.valid_) == set(whole)
    assert not _pairs(model.train_) & _pairs(model.valid_)


@pytest.mark.parametrize("orientation", ["user", "item"])
@pytest.mark.parametrize(("inputs", "center"), CHOICES)
def test_save_load_round_trip_keeps_identical_predictions(
    dataset, tmp_path, orientation, inputs, center
) -> None:
    model = DeepRec(
        **SMALL, orientation=orientation, predict_inputs=inputs, predict_center=center
    ).fit(dataset)
    model.save(tmp_path / "m")
    loaded = DeepRec.load(tmp_path / "m")
    assert (loaded.predict_inputs, loaded.predict_center) == (inputs, center)
    assert _pairs(loaded.valid_) == _pairs(model.valid_)
    np.testing.assert_array_equal(loaded.valid_.values, model.valid_.values)
    test = dataset.to_pandas("test")
    np.testing.assert_array_equal(
        loaded.predict(test.user, test.item, clip=False),
        model.predict(test.user, test.item, clip=False),
    )
    users = np.arange(min(5, model.n_users))
    np.testing.assert_array_equal(loaded._score_users(users), model._score_users(users))


def test_validation_score_reads_training_inputs_only(dataset) -> None:
    model = DeepRec(**SMALL, predict_inputs="train+valid", predict_center="train+valid")
    model.fit(dataset)
    honest = model.score(dataset, "valid")
    assert (model.predict_inputs, model.predict_center) == ("train+valid", "train+valid")
    model.set_params(predict_inputs="train", predict_center="train")
    assert honest == model.score(dataset, "valid")


def test_bad_choice_is_a_clear_config_error(dataset) -> None:
    model = DeepRec(**SMALL, predict_inputs="train+test").fit(dataset.to_pandas("train"))
    with pytest.raises(ConfigError, match="predict_inputs"):
        model.predict([dataset.user_ids[0]], [dataset.item_ids[0]])


def test_merge_keeps_the_first_matrix_on_overlap() -> None:
    first = CSRMatrix.from_coo(np.array([0, 1]), np.array([1, 0]), np.array([4.0, 2.0]), (2, 2))
    second = CSRMatrix.from_coo(np.array([0, 1]), np.array([1, 1]), np.array([1.0, 5.0]), (2, 2))
    merged = merge_ratings(first, second)
    assert _row_of(merged, 0) == {1: 4.0}
    assert _row_of(merged, 1) == {0: 2.0, 1: 5.0}


def _two_taste_dataset(seed: int = 0) -> PreparedDataset:
    """Two groups of users with opposite tastes over 40 items (5 vs 1). 'Warm' users train
    the model; 'cold' users have one uninformative training rating (an item everyone rates
    3) and reveal their group only in their validation ratings; their test ratings are the
    other items."""
    rng = np.random.default_rng(seed)
    n_items, neutral = 40, 0
    taste = np.where(np.arange(n_items) < n_items // 2, 5.0, 1.0)
    rows: dict[str, list[tuple[int, int, float]]] = {"train": [], "valid": [], "test": []}

    def rating(group: int, item: int) -> float:
        return 3.0 if item == neutral else (taste[item] if group == 0 else 6.0 - taste[item])

    for user in range(160):
        group = user % 2
        items = rng.permutation(np.arange(1, n_items))
        if user < 120:  # warm: half their items in training, a few in validation
            rows["train"] += [(user, neutral, 3.0)]
            rows["train"] += [(user, int(i), rating(group, int(i))) for i in items[:20]]
            rows["valid"] += [(user, int(i), rating(group, int(i))) for i in items[20:23]]
        else:  # cold
            rows["train"] += [(user, neutral, 3.0)]
            rows["valid"] += [(user, int(i), rating(group, int(i))) for i in items[:8]]
            rows["test"] += [(user, int(i), rating(group, int(i))) for i in items[8:20]]
    frames = [pd.DataFrame(rows[n], columns=["user", "item", "rating"]) for n in rows]
    return PreparedDataset.from_tables(*frames)


def test_validation_ratings_that_carry_the_signal_improve_predictions() -> None:
    dataset = _two_taste_dataset()
    model = DeepRec(hidden=[16], epochs=40, batch_size=16, seed=0, center="bias", lr=0.01)
    model.fit(dataset)
    model.set_params(predict_inputs="train")
    blind = model.score(dataset)["rmse"]
    model.set_params(predict_inputs="train+valid")
    seen = model.score(dataset)["rmse"]
    # without them the cold users look alike (about 2 off on every item); with them, their
    # group is known (measured 2.01 against 1.13)
    assert blind > 1.8
    assert seen < blind - 0.6


def test_the_cli_run_directory_keeps_the_validation_inputs(dataset, tmp_path) -> None:
    """`deeprec train` (train_run) saves RUN/best with the validation ratings, so a loaded
    run predicts from training + validation inputs like the fitted estimator."""
    from deeprec.runs.training import train_run
    from deeprec.train.config import TrainConfig

    dataset.save(tmp_path / "data")
    config = TrainConfig(hidden=[8], epochs=2, batch_size=16, seed=0, center="bias")
    summary = train_run(tmp_path / "data", config, tmp_path / "run", progress=False, echo=print)
    loaded = DeepRec.load(tmp_path / "run" / "best")
    assert loaded.predict_inputs == "train+valid"
    assert _pairs(loaded.valid_) == _split_pairs(dataset, "valid")
    assert _pairs(loaded.input_ratings()) == _split_pairs(dataset, "train") | _split_pairs(
        dataset, "valid"
    )
    assert loaded.score(dataset)["rmse"] == pytest.approx(summary["test"]["rmse"], abs=1e-9)


def test_refit_trains_the_chosen_model_again_on_train_plus_valid(dataset) -> None:
    """refit=True: the early-stopped model's best epoch count, trained again on train +
    validation (what the benchmark's defaults+refit measures); no validation remains."""
    params = dict(SMALL, epochs=12, early_stopping=3)
    stopped = DeepRec(**params).fit(dataset)
    refitted = DeepRec(**params, refit=True).fit(dataset)
    assert refitted.refit_ == {
        "epochs": [stopped.best_epoch_],
        "ratings": len(dataset.train) + len(dataset.valid),
    }
    # the record stays the chosen run's: its config, best epoch and validation RMSE
    assert refitted.config_.epochs == params["epochs"]
    assert refitted.best_valid_rmse_ == stopped.best_valid_rmse_
    assert len(refitted.refit_history_) == stopped.best_epoch_
    assert refitted.valid_.nnz == 0
    assert _pairs(refitted.train_) == _split_pairs(dataset, "train") | _split_pairs(
        dataset, "valid"
    )
    merged = PreparedDataset.from_tables(
        pd.concat([dataset.to_pandas("train"), dataset.to_pandas("valid")])
    )
    by_hand = DeepRec(**{**params, "epochs": stopped.best_epoch_}).fit(merged)
    test = dataset.to_pandas("test")
    np.testing.assert_allclose(
        refitted.predict(test.user, test.item), by_hand.predict(test.user, test.item), atol=1e-5
    )


def test_the_cli_run_directory_records_a_refit(dataset, tmp_path) -> None:
    """`refit: true` in a run's config: RUN/best is the model retrained on train +
    validation, and the summary and the closing lines say so."""
    from deeprec.runs.training import outcome_lines, train_run
    from deeprec.train.config import TrainConfig

    dataset.save(tmp_path / "data")
    config = TrainConfig(hidden=[8], epochs=3, batch_size=16, seed=0, center="bias", refit=True)
    lines: list[str] = []
    summary = train_run(
        tmp_path / "data", config, tmp_path / "run", progress=False, echo=lines.append
    )
    n_all = len(dataset.train) + len(dataset.valid)
    assert summary["refit"] == {"epochs": [summary["best_epoch"]], "ratings": n_all}
    assert any("(refit): that model is kept" in line for line in lines)
    assert outcome_lines(summary, config) == lines[-len(outcome_lines(summary, config)) :]
    loaded = DeepRec.load(tmp_path / "run" / "best")
    assert loaded.train_.nnz == n_all and loaded.refit_ == summary["refit"]

"""Data-driven defaults: `DeepRec()` chooses its model on validation (deeprec.selection).

Checks the choice is deterministic, bounded and recorded; that the validation carve-out
never orphans a user or item; that validation is scored as clipped RMSE on the rating scale
whatever the network sees; that odd rating scales and tiny sets train; and that a library
call leaves torch's thread count and generator as it found them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deeprec import DeepRec, load_model
from deeprec.baselines import BiasOnly
from deeprec.data.carve import carve_mask, with_carved_validation
from deeprec.data.dataset import PreparedDataset
from deeprec.data.prepare import prepare_dataset
from deeprec.errors import DataWarning
from deeprec.selection import SEARCHED_KEYS, needs_selection

from .model_data import split_frame, synthetic_frame

SRC = Path(__file__).resolve().parents[2] / "src"


def scaled_frame(scale: str, seed: int = 0, n_users: int = 90, n_items: int = 40) -> pd.DataFrame:
    """Low-rank ratings with user/item biases on a 1-100 or continuous -10..10 scale."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    b_u, b_i = rng.normal(0, 0.5, n_users), rng.normal(0, 0.7, n_items)
    z = b_u[:, None] + b_i[None, :] + u @ v.T / 1.5 + rng.normal(0, 0.3, (n_users, n_items))
    mask = rng.random((n_users, n_items)) < 0.4
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    users, items = np.nonzero(mask)
    z = z[users, items]
    rating = np.clip(np.round(55 + 18 * z), 1, 100) if scale == "1-100" else np.clip(2 * z, -10, 10)
    return pd.DataFrame({"user": users, "item": items, "rating": rating.astype(np.float32)})


# ------------------------------------------------------------------ carve-out
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    n_users=st.integers(1, 30),
    n_items=st.integers(1, 30),
    fraction=st.floats(0.01, 0.9),
    seed=st.integers(0, 10_000),
)
def test_carve_never_takes_anyones_last_training_rating(n, n_users, n_items, fraction, seed):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    mask = carve_mask(users, items, fraction, np.random.default_rng(seed))
    assert set(users[~mask]) == set(users) and set(items[~mask]) == set(items)
    assert mask.sum() <= round(n * fraction)
    again = carve_mask(users, items, fraction, np.random.default_rng(seed))
    np.testing.assert_array_equal(mask, again)  # seeded: the same rows


def test_carve_takes_the_fraction_where_nobody_is_rare() -> None:
    users = np.repeat(np.arange(200), 10)
    items = np.tile(np.arange(10), 200)
    mask = carve_mask(users, items, 0.1, np.random.default_rng(0))
    assert mask.sum() == 200


def test_valid_fraction_on_a_given_split_drops_no_test_rows(tmp_path) -> None:
    """Before: a carve-out could take a rare user's or item's only training rating, and its
    test ratings were dropped as unseen."""
    rng = np.random.default_rng(0)
    rows = [
        (u, i, float(rng.integers(1, 6))) for u in range(40) for i in range(8) if u % 3 or i < 2
    ]
    rows += [(100 + k, k % 8, 4.0) for k in range(30)]  # 30 users with one training rating
    train = pd.DataFrame(rows, columns=["user", "item", "rating"])
    test = pd.DataFrame({"user": [100 + k for k in range(30)], "item": 3, "rating": 3.0})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    files = [tmp_path / "train.csv", tmp_path / "test.csv"]
    dataset = prepare_dataset(files, "csv", "given", seed=0, valid_fraction=0.5)
    assert len(dataset.test) == 30 and dataset.meta["dropped_unseen"]["test"] == 0
    assert len(dataset.valid) > 0


def test_carved_dataset_keeps_its_id_maps() -> None:
    dataset = split_frame(synthetic_frame(seed=3))
    carved = with_carved_validation(dataset, 0.2, seed=1)
    assert carved.n_users == dataset.n_users and carved.n_items == dataset.n_items
    assert len(carved.train) + len(carved.valid) == len(dataset.train)
    assert set(carved.train.users) == set(dataset.train.users)
    assert set(carved.train.items) == set(dataset.train.items)


# ------------------------------------------------------------------ selection
@pytest.fixture(scope="module")
def small() -> PreparedDataset:
    return split_frame(synthetic_frame(n_users=80, n_items=30, seed=4))


@pytest.fixture(scope="module")
def chosen(small) -> DeepRec:
    return DeepRec(threads=1).fit(small)


def test_no_model_keyword_means_selection_and_any_pins_the_model(small) -> None:
    assert DeepRec().needs_selection() and DeepRec(seed=3, threads=1).needs_selection()
    pinned = DeepRec(hidden=[8], epochs=2, threads=1)
    assert not pinned.needs_selection()
    pinned.fit(small)
    assert not hasattr(pinned, "selection_")
    assert pinned.config().orientation == "user" and pinned.config().center == "bias"
    assert needs_selection(["epochs_x=1"]) and needs_selection(["threads=1", "seed=2"])
    assert not needs_selection(["weight_decay=0.1"])
    assert {"orientation", "center", "weight_decay", "hidden"} <= set(SEARCHED_KEYS)


def test_the_search_stops_at_its_candidate_budget() -> None:
    """Every L2 step gains here, so the unbounded search would fit 9 candidates; the
    budget (MAX_CANDIDATES) leaves out the runner-up family's last step."""
    from types import SimpleNamespace

    from deeprec.selection import select
    from deeprec.selection.candidates import MAX_CANDIDATES

    def fit(settings):
        score = {"user": 1.0, "item": 1.1}[settings["orientation"]]
        score += 0.05 * (settings["center"] == "none") - 0.01 * np.log(settings["weight_decay"])
        return SimpleNamespace(best_valid_rmse_=score, best_epoch_=1)

    _, report = select(fit, {}, valid_source="a test")
    names = [t.name for t in report.trials]
    assert MAX_CANDIDATES == 8 and len(names) == 8
    assert names[3:] == [
        "user-deep L2x3",
        "user-deep L2/3",
        "user-deep L2x9",
        "item-wide L2x3",
        "item-wide L2/3",
    ]


def test_selection_is_recorded_and_keeps_the_best_candidate(chosen) -> None:
    report = chosen.selection_
    trials = report["trials"]
    assert 3 <= len(trials) <= 8  # bounded: three candidates, then L2 steps, 8 fits at most
    best = min(trials, key=lambda t: t["valid_rmse"])
    assert report["winner"] == best["name"] and "lowest validation RMSE" in report["reason"]
    assert chosen.best_valid_rmse_ == pytest.approx(best["valid_rmse"])
    config = chosen.config()
    for key in SEARCHED_KEYS:
        value = getattr(config, key)
        assert value == best["settings"][key] or list(value) == best["settings"][key]
    assert chosen.get_params()["orientation"] is None  # fit() does not rewrite the keywords


def test_the_chosen_model_is_refit_on_train_plus_valid_by_default(small, chosen) -> None:
    """refit=None (the default) refits a model chosen from the data, not a pinned one; the
    selection and the validation record are those of the selection's own fit."""
    assert chosen.refits() and chosen.config().refit
    assert chosen.refit_ == {
        "epochs": chosen.phase_best_epochs_,  # [first phase] or [first, second]
        "ratings": len(small.train) + len(small.valid),
    }
    assert chosen.valid_.nnz == 0 and chosen.train_.nnz == len(small.train) + len(small.valid)
    with pytest.warns(DataWarning, match="retrained on train \\+ validation"):
        chosen.score(small, "valid")
    assert not DeepRec(hidden=[8]).refits() and DeepRec(hidden=[8], refit=True).refits()
    kept = DeepRec(threads=1, refit=False).fit(small)
    assert not kept.refits() and not kept.config().refit and not hasattr(kept, "refit_")
    untimed = [{k: v for k, v in t.items() if k != "seconds"} for t in kept.selection_["trials"]]
    assert untimed == [
        {k: v for k, v in t.items() if k != "seconds"} for t in chosen.selection_["trials"]
    ]
    assert kept.best_valid_rmse_ == chosen.best_valid_rmse_
    test = small.to_pandas("test")
    assert not np.array_equal(
        kept.predict(test.user, test.item), chosen.predict(test.user, test.item)
    )


def test_selection_is_deterministic_for_a_seed(small, chosen) -> None:
    again = DeepRec(threads=1).fit(small)
    assert [t["valid_rmse"] for t in again.selection_["trials"]] == [
        t["valid_rmse"] for t in chosen.selection_["trials"]
    ]
    test = small.to_pandas("test")
    np.testing.assert_array_equal(
        again.predict(test.user, test.item), chosen.predict(test.user, test.item)
    )


def test_validation_is_clipped_rmse_on_the_rating_scale(small) -> None:
    """The number selection compares is the same for centred, raw and standardised models:
    the validation split's clipped RMSE as score() computes it."""
    for center in ("bias", "none"):
        for standardize in (True, False):
            model = DeepRec(
                hidden=[8], epochs=3, center=center, standardize=standardize, threads=1
            ).fit(small)
            assert model.best_valid_rmse_ == pytest.approx(
                model.score(small, "valid")["rmse"], abs=1e-5
            )


def test_fit_without_validation_carves_one(chosen) -> None:
    frame = synthetic_frame(n_users=60, n_items=25, seed=5)
    model = DeepRec(threads=1).fit(frame)
    assert "training ratings" in model.selection_["valid_source"]
    assert model.best_valid_rmse_ is not None and model.best_epoch_ is not None


def test_selected_model_saves_and_loads(tmp_path, small, chosen) -> None:
    chosen.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config() == chosen.config()
    assert loaded.selection_["winner"] == chosen.selection_["winner"]
    test = small.to_pandas("test")
    np.testing.assert_array_equal(
        loaded.predict(test.user, test.item), chosen.predict(test.user, test.item)
    )


# ------------------------------------------------------------------ scales, tiny sets
@pytest.mark.parametrize("scale", ["1-100", "-10..10"])
def test_odd_scales_train_well_with_the_defaults(scale) -> None:
    """Standardised targets: the defaults learn on 1-100 and continuous -10..10 ratings
    as on stars, beat the bias baseline, and predict inside the training range."""
    dataset = split_frame(scaled_frame(scale, seed=1))
    model = DeepRec(threads=1).fit(dataset)
    low, high = dataset.rating_range
    test = dataset.to_pandas("test")
    pred = model.predict(test.user, test.item)
    assert low <= pred.min() and pred.max() <= high
    ours = model.score(dataset)["rmse"]
    bias = BiasOnly().fit(dataset).score(dataset)["rmse"]
    spread = float(np.std(test.rating))
    assert ours < bias < spread, (ours, bias, spread)


def test_half_stars_and_a_tiny_set_with_loners_train() -> None:
    """Under 1,000 ratings, a user with one rating, an item only one user rated."""
    rng = np.random.default_rng(2)
    frame = synthetic_frame(n_users=30, n_items=15, density=0.5, seed=2)
    frame["rating"] = np.clip(frame["rating"] - 0.5 * rng.integers(0, 2, len(frame)), 0.5, 5)
    loners = pd.DataFrame({"user": [9999, 9998], "item": [5, 7777], "rating": [4.5, 2.5]})
    frame = pd.concat([frame, loners], ignore_index=True)
    assert len(frame) < 1000
    model = DeepRec(threads=1).fit(frame)
    pred = model.predict([9999, 9998, 9998], [5, 7777, 5])
    assert np.all(np.isfinite(pred)) and np.all((pred >= 0.5) & (pred <= 5))


def test_fit_leaves_threads_and_the_global_generator_alone(small) -> None:
    before_threads = torch.get_num_threads()
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    DeepRec(hidden=[8], epochs=2, threads=1 if before_threads > 1 else 2).fit(small)
    assert torch.get_num_threads() == before_threads
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


# ------------------------------------------------------------------ CLI
def test_cli_train_without_config_selects_and_records_it(tmp_path) -> None:
    data = split_frame(synthetic_frame(n_users=50, n_items=20, seed=6)).save(tmp_path / "data")
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", "train", "--data", str(data),
         "--out", str(tmp_path / "run"), "--set", "threads=1", "--quiet"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "chosen:" in proc.stdout and "valid RMSE" in proc.stdout
    run = tmp_path / "run"
    selection = json.loads((run / "selection.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected"] == selection["winner"]
    assert f"retrained {selection['winner']} on train + validation" in proc.stdout
    assert summary["refit"]["epochs"] == summary["phase_best_epochs"]
    assert "refit: true" in (run / "config.yaml").read_text()
    assert (run / "best" / "model.json").is_file() and (run / "curves.png").is_file()
    saved = load_model(run / "best")
    assert saved.config().to_yaml() == (run / "config.yaml").read_text()

"""The estimator contract, run against every baseline on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec.base import KNOWN_MODELS, Recommender, load_model
from deeprec.baselines import AutoRec, BiasedMF, BiasOnly
from deeprec.data.dataset import PreparedDataset
from deeprec.errors import ConfigError

from .baseline_synthetic import single_torch_thread, tiny_frame  # noqa: F401

FACTORIES = {
    "bias": lambda seed=0: BiasOnly(reg_user=2.0, reg_item=2.0),
    "mf": lambda seed=0: BiasedMF(n_factors=4, epochs=15, lr=0.02, batch_size=32, seed=seed),
    "i-autorec": lambda seed=0: AutoRec(hidden=16, epochs=30, l2=1.0, seed=seed),
    "u-autorec": lambda seed=0: AutoRec(
        hidden=16, epochs=30, l2=1.0, orientation="user", batch_size=8, seed=seed
    ),
}
SEEDED = ["mf", "i-autorec", "u-autorec"]


@pytest.fixture(scope="module")
def tiny_ratings() -> pd.DataFrame:
    return tiny_frame()


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    valid = frame.sample(frac=0.15, random_state=1)
    return frame.drop(valid.index), valid


@pytest.mark.parametrize("name", list(FACTORIES))
def test_registered_and_round_trips(name, tiny_ratings, tmp_path):
    train, valid = _split(tiny_ratings)
    model = FACTORIES[name]().fit(train, valid)
    assert KNOWN_MODELS[type(model).__name__] == type(model).__module__
    users, items = valid["user"].to_numpy(), valid["item"].to_numpy()
    before = model.predict(users, items, clip=False)
    assert np.isfinite(before).all()
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(users, items, clip=False), before)
    assert Recommender.load(tmp_path / "m").score(valid) == model.score(valid)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_score_users_matches_predict(name, tiny_ratings):
    model = FACTORIES[name]().fit(tiny_ratings)
    users = np.array([0, 3, 5])
    full = model._score_users(users)
    assert full.shape == (3, model.n_items)
    uu, ii = np.repeat(users, model.n_items), np.tile(np.arange(model.n_items), 3)
    np.testing.assert_allclose(full.ravel(), model._predict_indices(uu, ii), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SEEDED)
def test_seed_reproducible(name, tiny_ratings):
    train, valid = _split(tiny_ratings)
    users, items = valid["user"].to_numpy(), valid["item"].to_numpy()
    a = FACTORIES[name](seed=3).fit(train, valid).predict(users, items, clip=False)
    b = FACTORIES[name](seed=3).fit(train, valid).predict(users, items, clip=False)
    c = FACTORIES[name](seed=4).fit(train, valid).predict(users, items, clip=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_rows_without_training_ratings_predict_sanely(name, tiny_ratings):
    """keep_unseen gives indices with no training ratings: predictions stay finite and sane."""
    extra = pd.DataFrame({"user": [999, 10], "item": ["i0", "new-item"], "rating": [4.0, 0.0]})
    ds = PreparedDataset.from_tables(tiny_ratings, None, extra, keep_unseen=True)
    model = FACTORIES[name]().fit(ds)
    pred = model.predict(np.array([999, 10]), np.array(["i0", "new-item"]), clip=False)
    assert np.isfinite(pred).all()
    low, high = model.rating_range_
    assert ((pred > low - 1) & (pred < high + 1)).all()
    assert np.isfinite(model._score_users(np.arange(model.n_users))).all()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_zero_ratings_are_ratings(name):
    """A user who rated everything 0 must be predicted lower than one who rated everything 4."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        level = 0.0 if u % 2 == 0 else 4.0
        for i in rng.choice(30, 15, replace=False):
            rows.append((u, int(i), level))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    model = FACTORIES[name]().fit(frame)
    pred = model.predict(np.array([0, 1] * 30), np.repeat(np.arange(30), 2)).reshape(30, 2)
    assert (pred[:, 0] < pred[:, 1]).mean() > 0.9


def test_item_autorec_refuses_fold_in():
    train = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 2.0, 5.0]})
    with pytest.raises(NotImplementedError, match="orientation='user'"):
        AutoRec(hidden=4, epochs=2).fit(train)._fold_in(np.array([0]), np.array([5.0]))


def test_bad_hyper_parameters_raise_config_error(tiny_ratings):
    for model in (
        BiasOnly(n_iter=0),
        BiasedMF(lr=-1),
        AutoRec(orientation="diagonal"),
        AutoRec(optimizer="lbfgs", batch_size=8),
    ):
        with pytest.raises(ConfigError):
            model.fit(tiny_ratings)

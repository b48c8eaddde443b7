"""Fold-in honesty check: is a folded-in new user served about as well as a trained one?

Users are hidden from training entirely. Every user's ratings are split the same way
(``test_frac`` held out): seen users train on the rest; hidden users are folded in from
the rest through the public `predict_for`. We then compare RMSE on the held-out part with
a bias-only baseline (global mean + regularised item bias from training + regularised user
bias from the same ratings the fold-in sees), so the baseline gets exactly the same
information as the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from deeprec.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from deeprec.base import Recommender


def low_rank_ratings(
    n_users: int = 500,
    n_items: int = 200,
    *,
    rank: int = 4,
    density: float = 0.25,
    noise: float = 0.3,
    bias_scale: float = 0.4,
    factor_scale: float = 1.2,
    seed: int = 0,
) -> pd.DataFrame:
    """Synthetic 1..5 star ratings from a low-rank model with user and item biases."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank)) / np.sqrt(rank)
    items = rng.normal(size=(n_items, rank)) / np.sqrt(rank)
    user_bias = rng.normal(scale=bias_scale, size=n_users)
    item_bias = rng.normal(scale=bias_scale, size=n_items)
    observed = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(observed)
    signal = 3.4 + user_bias[u] + item_bias[i] + factor_scale * np.sum(users[u] * items[i], axis=1)
    ratings = np.clip(np.round(signal + rng.normal(scale=noise, size=u.shape[0])), 1, 5)
    return pd.DataFrame({"user": u + 1, "item": i + 1, "rating": ratings.astype(np.float32)})


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def split_hidden(
    ratings: pd.DataFrame, *, hidden_frac: float, test_frac: float, seed: int
) -> dict[str, pd.DataFrame]:
    """train (seen users' kept ratings), seen_test, hidden_known (fold-in input), hidden_test."""
    rng = np.random.default_rng(seed)
    users = np.unique(ratings["user"].to_numpy())
    n_hidden = max(1, round(hidden_frac * users.shape[0]))
    hidden = rng.choice(users, size=n_hidden, replace=False)
    is_hidden = ratings["user"].isin(hidden).to_numpy()
    is_test = rng.random(len(ratings)) < test_frac
    return {
        "train": ratings[~is_hidden & ~is_test],
        "seen_test": ratings[~is_hidden & is_test],
        "hidden_known": ratings[is_hidden & ~is_test],
        "hidden_test": ratings[is_hidden & is_test],
    }


def bias_predictions(
    train: pd.DataFrame, known: pd.DataFrame, test: pd.DataFrame, *, reg: float = 10.0
) -> np.ndarray:
    """mu + b_i + b_u: b_i from train, b_u from `known` (the ratings the model also sees)."""
    mu = float(train["rating"].mean())
    item_stats = (train["rating"] - mu).groupby(train["item"]).agg(["sum", "count"])
    item_bias = item_stats["sum"] / (item_stats["count"] + reg)
    b_i_known = known["item"].map(item_bias).fillna(0.0).to_numpy()
    residual = known["rating"].to_numpy() - mu - b_i_known
    user_stats = known.assign(res=residual).groupby("user")["res"].agg(["sum", "count"])
    user_bias = user_stats["sum"] / (user_stats["count"] + reg)
    pred = (
        mu
        + test["item"].map(item_bias).fillna(0.0).to_numpy()
        + test["user"].map(user_bias).fillna(0.0).to_numpy()
    )
    return np.clip(pred, train["rating"].min(), train["rating"].max())


def fold_in_honesty(
    make_model: Callable[[], Recommender],
    ratings: pd.DataFrame,
    *,
    hidden_frac: float = 0.1,
    test_frac: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on seen users, fold in hidden ones; RMSE of model and bias-only on both groups."""
    parts = split_hidden(ratings, hidden_frac=hidden_frac, test_frac=test_frac, seed=seed)
    if min(len(p) for p in parts.values()) == 0:
        raise DataError("too few ratings to hide users and hold out a test part")
    model = make_model().fit(parts["train"])
    seen_test = parts["seen_test"]
    seen_truth = seen_test["rating"].to_numpy().astype(np.float64)
    seen_pred = model.predict(seen_test["user"].to_numpy(), seen_test["item"].to_numpy())

    hidden_pred: list[np.ndarray] = []
    hidden_truth: list[np.ndarray] = []
    n_unknown_items = 0
    known_by_user = dict(tuple(parts["hidden_known"].groupby("user")))
    hidden_test = parts["hidden_test"]
    hidden_test = hidden_test[hidden_test["user"].isin(known_by_user)]
    # groupby below walks users in sorted order: keep rows in that order for the baseline
    hidden_test = hidden_test.sort_values("user", kind="stable")
    for user, rows in hidden_test.groupby("user"):
        known = known_by_user[user]
        result = model.predict_for(
            dict(zip(known["item"].tolist(), known["rating"].tolist(), strict=True)),
            rows["item"].tolist(),
        )
        pred = result.frame["prediction"].to_numpy()
        n_unknown_items += len(result.unknown_requested)
        pred = np.where(np.isnan(pred), model.global_mean_, pred)  # items never trained on
        hidden_pred.append(pred)
        hidden_truth.append(rows["rating"].to_numpy().astype(np.float64))
    h_pred, h_truth = np.concatenate(hidden_pred), np.concatenate(hidden_truth)
    h_bias = bias_predictions(parts["train"], parts["hidden_known"], hidden_test)
    s_bias = bias_predictions(parts["train"], parts["train"], seen_test)
    return {
        "n_users_seen": int(parts["train"]["user"].nunique()),
        "n_users_hidden": len(known_by_user),
        "n_train": len(parts["train"]),
        "n_seen_test": len(seen_test),
        "n_hidden_foldin_ratings": len(parts["hidden_known"]),
        "n_hidden_test": len(hidden_test),
        "n_hidden_test_unknown_items": n_unknown_items,
        "rmse_seen_model": _rmse(seen_pred, seen_truth),
        "rmse_seen_bias": _rmse(s_bias, seen_truth),
        "rmse_hidden_foldin": _rmse(h_pred, h_truth),
        "rmse_hidden_bias": _rmse(h_bias, h_truth),
        "rmse_hidden_global_mean": _rmse(np.full_like(h_truth, model.global_mean_), h_truth),
    }

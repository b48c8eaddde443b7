"""Bias-only baseline: global mean + regularised user and item biases.

    r_hat(u, i) = mu + b_u + b_i

fitted by alternating closed-form ridge updates (as Koren 2010 and Surprise's BaselineOnly
with ALS): b_i = sum_u (r - mu - b_u) / (reg_item + n_i), then
b_u = sum_i (r - mu - b_i) / (reg_user + n_u), for `n_iter` sweeps. Everything is a
vectorised ``np.bincount``; users or items without training ratings get a bias of exactly 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from deeprec.base import Recommender
from deeprec.baselines._common import check_positive, counts
from deeprec.data.dataset import PreparedDataset
from deeprec.errors import CheckpointError, ConfigError


class BiasOnly(Recommender):
    """mu + b_u + b_i with L2-regularised biases (closed-form alternating least squares)."""

    model_name: ClassVar[str] = "BiasOnly"

    user_bias_: np.ndarray
    item_bias_: np.ndarray

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_iter: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_iter = n_iter

    def _fit_dataset(self, dataset: PreparedDataset) -> None:
        check_positive("reg_user", self.reg_user, allow_zero=True)
        check_positive("reg_item", self.reg_item, allow_zero=True)
        if int(self.n_iter) < 1:
            raise ConfigError(f"n_iter must be >= 1, got {self.n_iter!r}")
        part = dataset.train
        self.user_bias_, self.item_bias_ = fit_biases(
            part.users,
            part.items,
            part.ratings,
            self.global_mean_,
            (self.n_users, self.n_items),
            reg_user=self.reg_user,
            reg_item=self.reg_item,
            n_iter=int(self.n_iter),
        )

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        return self.global_mean_ + self.user_bias_[users][:, None] + self.item_bias_[None, :]

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """A new user's bias is one more closed-form update with the item biases held fixed."""
        b_u = fold_in_bias(items, ratings, self.global_mean_, self.item_bias_, self.reg_user)
        return self.global_mean_ + b_u + self.item_bias_

    def _state_dict(self) -> dict[str, Any]:
        return {
            "user_bias": torch.from_numpy(np.ascontiguousarray(self.user_bias_)),
            "item_bias": torch.from_numpy(np.ascontiguousarray(self.item_bias_)),
        }

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.user_bias_ = state["user_bias"].numpy().astype(np.float64)
            self.item_bias_ = state["item_bias"].numpy().astype(np.float64)
        except KeyError as exc:
            raise CheckpointError(f"BiasOnly checkpoint lacks {exc}") from exc
        if self.user_bias_.shape != (self.n_users,) or self.item_bias_.shape != (self.n_items,):
            raise CheckpointError("BiasOnly checkpoint does not match its id maps")


def fit_biases(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    mu: float,
    shape: tuple[int, int],
    *,
    reg_user: float = 15.0,
    reg_item: float = 10.0,
    n_iter: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """(b_user, b_item) by alternating ridge updates around the global mean `mu`.

    Shared by BiasOnly and DeepRec's ``center="bias"`` (the autoencoder then models residuals).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    resid = np.asarray(ratings, dtype=np.float64) - mu
    n_u = counts(users, shape[0])
    n_i = counts(items, shape[1])
    b_u = np.zeros(shape[0])
    b_i = np.zeros(shape[1])
    for _ in range(n_iter):
        b_i = _ridge_mean(items, resid - b_u[users], n_i, reg_item)
        b_u = _ridge_mean(users, resid - b_i[items], n_u, reg_user)
    return b_u, b_i


def fold_in_bias(
    index: np.ndarray, ratings: np.ndarray, mu: float, other_bias: np.ndarray, reg: float
) -> float:
    """A new row's bias: one closed-form ridge update with the other side's biases held fixed."""
    index = np.asarray(index, dtype=np.int64)
    if index.shape[0] == 0:
        return 0.0
    resid = np.asarray(ratings, np.float64) - mu - other_bias[index]
    return float(resid.sum() / (reg + index.shape[0]))


def _ridge_mean(index: np.ndarray, values: np.ndarray, n: np.ndarray, reg: float) -> np.ndarray:
    """sum(values per index) / (reg + count); 0 where an index has no values and reg is 0."""
    sums = np.bincount(index, weights=values, minlength=n.shape[0])
    denom = reg + n
    out = np.zeros(n.shape[0])
    np.divide(sums, denom, out=out, where=denom > 0)
    return out

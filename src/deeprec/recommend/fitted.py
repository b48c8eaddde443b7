"""What the query functions (top-N, fold-in, similar items) need from a fitted model.

They sit below the estimator layer: `deeprec.base.Recommender` calls them from its
``recommend``/``predict_for``/``similar_items`` methods, so they must not import it back.
`FittedModel` names the part of the estimator they use; any `Recommender` satisfies it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from deeprec.data.sparse import CSRMatrix


class FittedModel(Protocol):
    """The fitted state and hooks of a `deeprec.base.Recommender` that queries read."""

    user_ids_: np.ndarray
    item_ids_: np.ndarray
    train_: CSRMatrix
    rating_range_: tuple[float, float]

    @property
    def n_users(self) -> int: ...

    @property
    def n_items(self) -> int: ...

    def _check_fitted(self) -> None: ...

    def known_ratings(self) -> CSRMatrix: ...

    def _score_users(self, users: np.ndarray) -> np.ndarray: ...

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray: ...

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray: ...


def fitted_setting(model: Any, key: str, default: Any) -> Any:
    """A trained setting of `model`: the fitted config's (DeepRec's selection resolves the
    keywords left at None), else the attribute of that name (baselines), else `default`."""
    if hasattr(model, "config_"):
        return getattr(model.config(), key)
    value = getattr(model, key, default)
    return default if value is None else value

"""New users (and, for item-based models, new items) served without retraining.

A user-based autoencoder maps any rating vector to predictions over all items, so a user
it never saw is one forward pass away: encode their ratings, read the output. Inputs are
checked (empty, out of scale, non-finite, duplicated) and ids the model does not know are
reported back in the result, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deeprec.errors import DataError, UnknownIdError
from deeprec.recommend.fitted import FittedModel
from deeprec.recommend.ids import parse_ratings, resolve
from deeprec.recommend.topn import check_k, scored_frame, top_k

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


ON_UNKNOWN = ("report", "raise")


@dataclass(frozen=True)
class FoldInResult:
    """A fold-in answer plus everything that was not used.

    frame: ``recommend_for`` -> (item, score, prediction), best first (score unclipped,
    prediction clipped to the scale); ``predict_for`` -> (item,
    prediction) in the order asked, NaN for ids the model does not know.
    """

    frame: pd.DataFrame
    n_used: int
    unknown_rated: list[Any] = field(default_factory=list)
    unknown_requested: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        records = self.frame.to_dict(orient="records")
        for record in records:
            for key, value in record.items():
                if isinstance(value, float) and value != value:
                    record[key] = None
                elif isinstance(value, np.generic):
                    record[key] = value.item()
        return {
            "results": records,
            "n_ratings_used": self.n_used,
            "unknown_rated": [_plain(v) for v in self.unknown_rated],
            "unknown_requested": [_plain(v) for v in self.unknown_requested],
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _parse(
    model: FittedModel, ratings: Mapping[Any, Any], on_unknown: str, what: str
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {on_unknown!r}")
    ids = model.item_ids_ if what == "item" else model.user_ids_
    index, values, unknown = parse_ratings(ids, ratings, model.rating_range_, what=what)
    if unknown and on_unknown == "raise":
        raise UnknownIdError(
            f"{len(unknown)} rated {what}(s) unknown to the model: {unknown[:10]}",
            field="ratings",
        )
    return index, values, unknown


def fold_in_user(model: FittedModel, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Raw model outputs over all items for a new user (item indices, ratings)."""
    try:
        return np.asarray(model._fold_in(index, values), dtype=np.float64)
    except NotImplementedError as exc:
        raise DataError(f"{type(model).__name__} cannot serve new users: {exc}") from None


def fold_in_item(model: FittedModel, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Raw model outputs over all users for a new item (user indices, ratings)."""
    try:
        return np.asarray(model._fold_in_item(index, values), dtype=np.float64)
    except NotImplementedError as exc:
        raise DataError(f"{type(model).__name__} cannot serve new items: {exc}") from None


def _predictions(
    model: FittedModel, scores: np.ndarray, ids: np.ndarray, requested: Sequence[Any], clip: bool
) -> tuple[np.ndarray, list[Any]]:
    requested = list(requested)
    index, known = resolve(ids, requested)
    out = np.full(len(requested), np.nan)
    out[known] = scores[index[known]]
    if clip:
        out = np.clip(out, *model.rating_range_)
    return out, [requested[i] for i in np.flatnonzero(~known)]


def predict_for(
    model: FittedModel,
    ratings: Mapping[Any, Any],
    items: Sequence[Any],
    *,
    clip: bool = True,
    on_unknown: str = "report",
) -> FoldInResult:
    """Predicted ratings of `items` for a new user given as {raw item id: rating}."""
    import pandas as pd

    model._check_fitted()
    index, values, unknown = _parse(model, ratings, on_unknown, "item")
    scores = fold_in_user(model, index, values)
    preds, missing = _predictions(model, scores, model.item_ids_, items, clip)
    frame = pd.DataFrame({"item": list(items), "prediction": preds})
    return FoldInResult(frame, int(index.shape[0]), unknown, missing)


def recommend_for(
    model: FittedModel,
    ratings: Mapping[Any, Any],
    k: int = 10,
    *,
    exclude_rated: bool = True,
    on_unknown: str = "report",
) -> FoldInResult:
    """The k best items for a new user given as {raw item id: rating}; rated ones excluded."""

    model._check_fitted()
    k = check_k(k)
    index, values, unknown = _parse(model, ratings, on_unknown, "item")
    scores = torch.from_numpy(fold_in_user(model, index, values))[None, :]
    exclude = None
    if exclude_rated:
        exclude = (torch.zeros(index.shape[0], dtype=torch.long), torch.from_numpy(index))
    best, order, valid = top_k(scores, k, exclude)
    keep = order[0][valid[0]].numpy()
    frame = scored_frame(model, keep, best[0][valid[0]].numpy())
    return FoldInResult(frame, int(index.shape[0]), unknown, [])


def predict_for_item(
    model: FittedModel,
    ratings: Mapping[Any, Any],
    users: Sequence[Any],
    *,
    clip: bool = True,
    on_unknown: str = "report",
) -> FoldInResult:
    """Predicted ratings of a new item by `users`, given its ratings as {raw user id: rating}.

    Item-based models only (their input is an item's vector over users).
    """
    import pandas as pd

    model._check_fitted()
    index, values, unknown = _parse(model, ratings, on_unknown, "user")
    scores = fold_in_item(model, index, values)
    preds, missing = _predictions(model, scores, model.user_ids_, users, clip)
    frame = pd.DataFrame({"user": list(users), "prediction": preds})
    return FoldInResult(frame, int(index.shape[0]), unknown, missing)

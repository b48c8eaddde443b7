"""Raw ids and ratings coming from users (Python calls, JSON bodies, CSV files) -> indices.

JSON object keys are always strings, so an integer-id model must accept "42" for item 42;
anything that cannot be an id of the model is *reported*, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from deeprec.data.dataset import lookup
from deeprec.errors import DataError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _as_model_id(value: Any, integer_ids: bool) -> Any | None:
    """`value` converted to the id type of the model, or None when it cannot be one."""
    if isinstance(value, bool):
        return None
    if not integer_ids:
        return str(value) if isinstance(value, (str, int, np.integer)) else None
    number: int | None = None
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and len(text) < 25:
            number = int(text)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value):
        number = int(value) if value == int(value) else None
    if number is None or not _INT64_MIN <= number <= _INT64_MAX:
        return None  # not an integer, or too large to be an id of the model
    return number


def resolve(sorted_ids: np.ndarray, raw: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `raw` ids in `sorted_ids` (-1 where unknown) and a bool mask of known ones."""
    values = list(raw)
    if not values:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    arr = np.asarray(values)
    integer_ids = sorted_ids.dtype.kind in "iu"
    if (integer_ids and arr.dtype.kind == "i") or (not integer_ids and arr.dtype.kind == "U"):
        index = lookup(sorted_ids, arr)  # fast path: already the right type
    else:
        converted = [_as_model_id(v, integer_ids) for v in values]
        index = np.full(len(values), -1, np.int64)
        ok = [i for i, v in enumerate(converted) if v is not None]
        if ok:
            index[ok] = lookup(sorted_ids, np.asarray([converted[i] for i in ok]))
    return index, index >= 0


def parse_ratings(
    sorted_ids: np.ndarray,
    ratings: Mapping[Any, Any],
    rating_range: tuple[float, float],
    *,
    what: str = "item",
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Check a {raw id: rating} mapping; return (indices, ratings, unknown raw ids).

    Rejects (DataError) an empty mapping, non-numeric or non-finite ratings, ratings outside
    the model's training scale, and a mapping where no id is known to the model.
    """
    if not isinstance(ratings, Mapping):
        raise DataError(
            f"ratings must be a mapping of {what} id -> rating, got {type(ratings).__name__}",
            field="ratings",
        )
    if len(ratings) == 0:
        raise DataError("ratings is empty: give at least one rated " + what, field="ratings")
    keys = list(ratings.keys())
    low, high = rating_range
    values = np.empty(len(keys), np.float64)
    for pos, key in enumerate(keys):
        value = ratings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DataError(f"rating of {what} {key!r} is not a number: {value!r}", field="ratings")
        value = float(value)
        if not math.isfinite(value):
            raise DataError(f"rating of {what} {key!r} is not finite: {value}", field="ratings")
        if value < low - 1e-9 or value > high + 1e-9:
            raise DataError(
                f"rating of {what} {key!r} is {value:g}, outside the model's scale "
                f"[{low:g}, {high:g}]",
                field="ratings",
            )
        values[pos] = value
    index, known = resolve(sorted_ids, keys)
    unknown = [keys[i] for i in np.flatnonzero(~known)]
    if known.any():
        unique, counts = np.unique(index[known], return_counts=True)
        if (counts > 1).any():
            twice = [keys[i] for i in np.flatnonzero(index == unique[counts > 1][0])]
            raise DataError(f"the same {what} is rated twice under ids {twice}", field="ratings")
    else:
        shown = ", ".join(repr(k) for k in unknown[:10])
        raise DataError(
            f"none of the {len(keys)} rated {what}s is known to the model ({shown}"
            f"{', ...' if len(unknown) > 10 else ''})",
            field="ratings",
        )
    return index[known], values[known], unknown

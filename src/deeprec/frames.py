"""Reading the user's tables: column mappings (``columns=``) and scikit-learn's (X, y) form.

Every model method that takes a table accepts ``columns={"user": ..., "item": ...,
"rating": ..., "timestamp": ...}``, mapping deeprec's names to the table's own (as the CLI's
``--columns`` does); e.g. MovieLens ``ratings.csv`` needs ``{"user": "userId", "item":
"movieId"}``. A mapping given to ``fit`` is remembered (``columns_``, saved with the model),
so later ``predict``/``score``/``recommend`` calls read and write the same names.

scikit-learn form: ``fit(X, y)``, ``predict(X)`` and ``score(X, y)`` with X a table of user
and item ids (two columns, or a 2-D array: user first) and y the ratings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deeprec.errors import DataError

CANONICAL = ("user", "item", "rating", "timestamp")


def check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """A validated copy of a ``columns`` mapping (canonical name -> the table's name)."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise DataError(
            f"columns must be a mapping like {{'user': 'userId', 'item': 'movieId'}}, "
            f"got {type(columns).__name__}"
        )
    unknown = sorted(set(columns) - set(CANONICAL))
    if unknown:
        raise DataError(f"columns: unknown key(s) {unknown}; keys are {', '.join(CANONICAL)}")
    return {str(k): str(v) for k, v in columns.items()}


def is_target(value: Any) -> bool:
    """Whether fit's/score's second argument is scikit-learn's y (1-D ratings), rather than
    a validation table or a split name."""
    if value is None or isinstance(value, (str, dict)):
        return False
    if isinstance(value, (list, tuple)):
        return True
    shape = getattr(value, "shape", None)
    return shape is not None and len(shape) == 1


def _column_names(frame: Any) -> list[str]:
    names = getattr(frame, "columns", None)
    if names is None and isinstance(frame, Mapping):
        names = list(frame)
    return [str(c) for c in names] if names is not None else []


def _column(frame: Any, name: str) -> np.ndarray:
    column = frame[name]
    to_numpy = getattr(column, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else column)


def resolve_name(frame: Any, canonical: str, columns: Mapping[str, str]) -> str | None:
    """The table's column for `canonical`: the mapped name if present, else the canonical
    name if present (a remembered mapping does not stop canonical tables from working)."""
    names = _column_names(frame)
    mapped = columns.get(canonical)
    if mapped is not None and mapped in names:
        return mapped
    if canonical in names:
        return canonical
    return None


def id_columns(data: Any, columns: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) raw-id arrays from a table (pandas, Polars, dict) or a 2-D array."""
    if _column_names(data):
        found = [resolve_name(data, name, columns) for name in ("user", "item")]
        if None in found:
            want = [columns.get(n, n) for n in ("user", "item")]
            raise DataError(
                f"the table needs user and item id columns {want} (pass columns= to name "
                f"yours); it has {_column_names(data)}"
            )
        return _column(data, found[0]), _column(data, found[1])  # type: ignore[arg-type]
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[1] < 2:
        raise DataError(
            "expected a table with user and item columns or a 2-D array (user, item), "
            f"got shape {array.shape}"
        )
    return array[:, 0], array[:, 1]


def ratings_table(data: Any, columns: Mapping[str, str], y: Any = None) -> Any:
    """The canonical Polars ratings table of a user table, or of X plus ratings y."""
    import pandas as pd

    from deeprec.data.table import to_ratings_table

    if y is None:
        names = _column_names(data)
        mapping = {
            name: found
            for name in CANONICAL
            if (found := resolve_name(data, name, columns)) is not None
        }
        if not names:  # not a table: let to_ratings_table say what it expected
            return to_ratings_table(data)
        return to_ratings_table(
            data, columns={**{n: columns.get(n, n) for n in CANONICAL}, **mapping}
        )
    users, items = id_columns(data, columns)
    ratings = np.asarray(y, dtype=np.float64).reshape(-1)
    if ratings.shape[0] != users.shape[0]:
        raise DataError(f"X has {users.shape[0]} rows but y has {ratings.shape[0]} ratings")
    frame = {"user": users, "item": items, "rating": ratings}
    if _column_names(data) and (ts := resolve_name(data, "timestamp", columns)) is not None:
        frame["timestamp"] = _column(data, ts)
    return to_ratings_table(pd.DataFrame(frame))


def rename_output(frame: Any, columns: Mapping[str, str]) -> Any:
    """A result DataFrame with its user/item columns named as the caller's tables name them."""
    renames = {k: v for k, v in columns.items() if k in ("user", "item") and k in frame.columns}
    return frame.rename(columns=renames) if renames else frame

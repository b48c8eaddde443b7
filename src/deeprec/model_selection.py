"""Model selection on a ratings table, in the manner of Surprise's ``cross_validate``.

``cross_validate(DeepRec(epochs=20), ratings, cv=5)`` splits the ratings (not the users)
into `cv` seeded folds; for each fold it fits a fresh copy of the model (same
hyper-parameters) on the other folds and scores it on this one, then prints a table with
each fold's RMSE, MAE (predictions clipped to the rating scale, the project's headline),
fit and test time, and their mean and standard deviation::

    Evaluating RMSE, MAE of DeepRec on 5 split(s).

                      Fold 1  Fold 2  Fold 3  Fold 4  Fold 5  Mean    Std
    RMSE (testset)    0.9312  0.9260  ...

Test ratings of users or items absent from a fold's training part get the model's fallback
(the training mean) and are counted in ``n_unknown``. A fit on a table has no validation
split, so the model of each fold is that of its last epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deeprec.errors import DataError

MEASURES = ("rmse", "mae")


def fresh_copy(model: Any) -> Any:
    """An unfitted model with the same hyper-parameters (scikit-learn's ``clone``)."""
    return type(model)(**model.get_params())


def k_fold_indices(n: int, cv: int, seed: int) -> list[np.ndarray]:
    """`cv` disjoint, seeded, near-equal folds of row positions 0..n-1."""
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise DataError(f"cv must be an integer >= 2, got {cv!r}")
    if n < cv:
        raise DataError(f"cannot split {n} ratings into {cv} folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, cv)]


def cross_validate(
    model: Any,
    ratings: Any,
    cv: int = 5,
    *,
    measures: tuple[str, ...] = MEASURES,
    seed: int = 0,
    columns: dict[str, str] | None = None,
    verbose: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit and score `model` on `cv` folds of a ratings table; print a per-fold table.

    Returns ``{"test_rmse": array, "test_mae": array, "fit_time": array, "test_time":
    array, "n_test": array, "n_unknown": array}`` (one entry per fold), like Surprise.
    """
    from deeprec.frames import check_columns, ratings_table

    unknown = sorted(set(measures) - set(MEASURES))
    if unknown or not measures:
        raise DataError(f"measures must be among {', '.join(MEASURES)}, got {list(measures)}")
    table = ratings_table(ratings, check_columns(columns))
    folds = k_fold_indices(table.height, cv, seed)
    results: dict[str, list[float]] = {f"test_{m}": [] for m in measures}
    results.update(fit_time=[], test_time=[], n_test=[], n_unknown=[])
    for k, test_rows in enumerate(folds):
        train_rows = np.concatenate([f for j, f in enumerate(folds) if j != k])
        fold_model = fresh_copy(model)
        started = time.perf_counter()
        fold_model.fit(table[train_rows])
        fitted = time.perf_counter()
        score = fold_model.score(table[test_rows])
        results["fit_time"].append(fitted - started)
        results["test_time"].append(time.perf_counter() - fitted)
        for m in measures:
            results[f"test_{m}"].append(float(score[m]))
        results["n_test"].append(score["n"])
        results["n_unknown"].append(score["n_unknown"])
    out = {key: np.asarray(values) for key, values in results.items()}
    if verbose:
        for line in format_table(type(model).__name__, out, measures):
            echo(line)
    return out


def format_table(name: str, results: dict[str, np.ndarray], measures: tuple[str, ...]) -> list[str]:
    """Surprise's layout: one column per fold, then Mean and Std; one row per measure."""
    n = len(results["fit_time"])
    head = ", ".join(m.upper() for m in measures)
    lines = [f"Evaluating {head} of {name} on {n} split(s).", ""]
    lines.append(" " * 18 + "".join(f"{'Fold ' + str(i + 1):<8}" for i in range(n)) + "Mean    Std")
    rows = [(f"{m.upper()} (testset)", results[f"test_{m}"], "{:.4f}") for m in measures]
    rows += [
        ("Fit time", results["fit_time"], "{:.2f}"),
        ("Test time", results["test_time"], "{:.2f}"),
    ]
    for label, values, fmt in rows:
        cells = [fmt.format(v) for v in values] + [
            fmt.format(values.mean()),
            fmt.format(values.std()),
        ]
        lines.append(f"{label:<18}" + "".join(f"{c:<8}" for c in cells).rstrip())
    unknown = int(results["n_unknown"].sum())
    if unknown:
        lines.append(
            f"({unknown:,} test rating(s) had a user or item unseen in their fold's training "
            "part: predicted with the training mean)"
        )
    return lines

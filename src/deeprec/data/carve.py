"""Carving a validation set out of training ratings without orphaning any user or item.

A plain random carve-out can take every training rating of a rare user or item. That user or
item then disappears from the id maps, and the test ratings that mention it are dropped as
"unseen": a validation split must never cost test rows. Here each user and each item keeps at
least one training rating; only ratings beyond that can move to validation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from deeprec.errors import DataError


def carve_mask(
    users: np.ndarray, items: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """A boolean mask over the rows: True for about `fraction` of them, chosen at random,
    such that every user and every item keeps at least one False (training) row.

    Vectorised: a random candidate set is drawn, then for each user (and then each item)
    whose every row was drawn, its lowest-keyed drawn row is given back to training.
    Giving rows back never takes one from anybody, so both guarantees hold together.
    """
    n = int(users.shape[0])
    n_valid = round(n * fraction)
    mask = np.zeros(n, dtype=bool)
    if n_valid <= 0:
        return mask
    keys = rng.random(n)
    mask[np.argsort(keys, kind="stable")[:n_valid]] = True
    for owner in (users, items):
        _keep_one(np.asarray(owner), mask, keys)
    return mask


def _keep_one(owner: np.ndarray, mask: np.ndarray, keys: np.ndarray) -> None:
    """Unmask one row (the lowest key) of every owner whose rows are all masked."""
    _, inverse, totals = np.unique(owner, return_inverse=True, return_counts=True)
    masked = np.bincount(inverse, weights=mask, minlength=totals.shape[0])
    orphaned = np.flatnonzero(masked == totals)
    if orphaned.size == 0:
        return
    rows = np.flatnonzero(np.isin(inverse, orphaned))
    order = np.lexsort((keys[rows], inverse[rows]))  # by owner, then key
    rows = rows[order]
    first = np.ones(rows.shape[0], dtype=bool)
    first[1:] = inverse[rows[1:]] != inverse[rows[:-1]]
    mask[rows[first]] = False


def with_carved_validation(dataset: Any, fraction: float, seed: int) -> Any:
    """The dataset with a seeded `fraction` of its training ratings moved to validation
    (carve_mask: nobody loses their last training rating, so the id maps stay valid)."""
    from deeprec.data.dataset import Split

    if not 0.0 < fraction < 1.0:
        raise DataError(
            f"valid_fraction must be in (0, 1) to carve a validation split, got {fraction!r}"
        )
    train = dataset.train
    picked = carve_mask(train.users, train.items, fraction, np.random.default_rng([seed, 7]))
    if not picked.any():
        return dataset

    def part(mask: np.ndarray) -> Split:
        return Split(
            users=train.users[mask],
            items=train.items[mask],
            ratings=train.ratings[mask],
            timestamps=None if train.timestamps is None else train.timestamps[mask],
        )

    meta = {**dataset.meta, "rating_range": list(dataset.rating_range)}
    meta["valid_carved"] = {"fraction": fraction, "seed": seed, "rows": int(picked.sum())}
    return replace(dataset, train=part(~picked), valid=part(picked), meta=meta)


def with_validation_merged(dataset: Any) -> Any:
    """The dataset with its validation ratings moved back into train and no validation:
    the final fit on every training rating, once validation has chosen (TrainConfig.refit)."""
    from deeprec.data.dataset import Split

    a, b = dataset.train, dataset.valid
    stamps = None
    if a.timestamps is not None and b.timestamps is not None:
        stamps = np.concatenate([a.timestamps, b.timestamps])
    train = Split(
        users=np.concatenate([a.users, b.users]),
        items=np.concatenate([a.items, b.items]),
        ratings=np.concatenate([a.ratings, b.ratings]),
        timestamps=stamps,
    )
    meta = {**dataset.meta, "rating_range": list(dataset.rating_range)}
    return replace(dataset, train=train, valid=Split.empty(), meta=meta)

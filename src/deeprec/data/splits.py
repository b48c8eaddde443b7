"""Split definitions: which rows are train, validation and test.

Every split labels rows (see deeprec.data.indexing). Time splits label a *holdout* window;
after the paper's rule drops holdout rows whose user or item is not in train, the rest is cut
50/50 into validation and test by a seeded permutation (exact halves, not a coin per rating).

SPEC strings: ``netflix-full|netflix-3m|netflix-6m|netflix-1y``, ``time:TRAIN_END:TEST_END``
(or ``time:TRAIN_START:TRAIN_END:TEST_START:TEST_END``; dates YYYY-MM-DD, ends inclusive),
``time-quantile:Q``, ``random:TRAIN,VALID,TEST``, ``given``, ``column:NAME``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deeprec.data.carve import carve_mask
from deeprec.data.indexing import EXCLUDED, HOLDOUT, TEST, TRAIN, VALID, Columns
from deeprec.errors import DataError

DAY = 86_400

# Table 1 of Kuchaiev & Ginsburg (2017): train window, test window; both ends inclusive.
NETFLIX_SPLITS: dict[str, tuple[str, str, str, str]] = {
    "netflix-full": ("1999-12-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "netflix-3m": ("2005-09-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "netflix-6m": ("2005-06-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "netflix-1y": ("2004-06-01", "2005-05-31", "2005-06-01", "2005-06-30"),
}
SPEC_HELP = (
    "netflix-full | netflix-3m | netflix-6m | netflix-1y | time:TRAIN_END:TEST_END | "
    "time:TRAIN_START:TRAIN_END:TEST_START:TEST_END | time-quantile:Q | "
    "random:TRAIN,VALID,TEST | given | column:NAME"
)
COLUMN_VALUES = {
    "train": TRAIN,
    "training": TRAIN,
    "valid": VALID,
    "validation": VALID,
    "val": VALID,
    "test": TEST,
    "testing": TEST,
}


@dataclass(frozen=True)
class SplitSpec:
    """A parsed SPEC. `windows` are (start, end) epoch seconds, end exclusive (day after)."""

    kind: str  # netflix | time | time-quantile | random | given | column
    text: str
    train_window: tuple[int | None, int | None] | None = None
    test_window: tuple[int | None, int | None] | None = None
    quantile: float | None = None
    fractions: tuple[float, float, float] | None = None
    column: str | None = None
    dates: tuple[str | None, ...] = field(default=())

    @property
    def needs_timestamps(self) -> bool:
        return self.kind in ("netflix", "time", "time-quantile")

    def describe(self) -> dict[str, Any]:
        """The definition as stored in meta.json."""
        out: dict[str, Any] = {"spec": self.text, "kind": self.kind}
        if self.dates:
            names = ("train_start", "train_end", "test_start", "test_end")
            out["windows"] = dict(zip(names, self.dates, strict=True))
            out["inclusive_ends"] = True
        if self.quantile is not None:
            out["quantile"] = self.quantile
        if self.fractions is not None:
            out["fractions"] = dict(zip(("train", "valid", "test"), self.fractions, strict=True))
        if self.column is not None:
            out["column"] = self.column
        if self.kind in ("netflix", "time", "time-quantile"):
            out["holdout"] = "unseen users/items dropped, then 50/50 valid/test (seeded)"
        return out


def _date(text: str, spec: str) -> int:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise DataError(
            f"split {spec!r}: {text!r} is not a date YYYY-MM-DD", field="split"
        ) from exc
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def parse_split(spec: str) -> SplitSpec:
    """Parse a SPEC string; unknown names and bad numbers raise DataError(field='split')."""
    text = spec.strip()
    name, _, arg = text.partition(":")
    name = name.lower()
    if name in NETFLIX_SPLITS and not arg:
        return _time_spec("netflix", text, NETFLIX_SPLITS[name])
    if name == "time":
        parts = arg.split(":")
        if len(parts) == 2:
            return _time_spec("time", text, (None, parts[0], None, parts[1]))
        if len(parts) == 4:
            return _time_spec("time", text, tuple(parts))
        raise DataError(
            f"split {spec!r}: expected time:TRAIN_END:TEST_END or "
            "time:TRAIN_START:TRAIN_END:TEST_START:TEST_END",
            field="split",
        )
    if name == "time-quantile":
        try:
            q = float(arg)
        except ValueError:
            q = -1.0
        if not 0.0 < q < 1.0:
            raise DataError(f"split {spec!r}: Q must be a number in (0, 1)", field="split")
        return SplitSpec("time-quantile", text, quantile=q)
    if name == "random":
        try:
            fractions = tuple(float(x) for x in arg.split(","))
        except ValueError:
            fractions = ()
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise DataError(
                f"split {spec!r}: expected random:TRAIN,VALID,TEST with fractions >= 0 "
                "that sum to 1 (e.g. random:0.9,0.05,0.05)",
                field="split",
            )
        if fractions[0] == 0 or fractions[2] == 0:
            raise DataError(f"split {spec!r}: train and test fractions must be > 0", field="split")
        return SplitSpec("random", text, fractions=fractions)  # type: ignore[arg-type]
    if name == "given" and not arg:
        return SplitSpec("given", text)
    if name == "column" and arg.strip():
        return SplitSpec("column", text, column=arg.strip())
    raise DataError(f"unknown split {spec!r}; expected one of: {SPEC_HELP}", field="split")


def _time_spec(kind: str, text: str, dates: tuple[str | None, ...]) -> SplitSpec:
    train_start, train_end, test_start, test_end = (
        None if d is None else _date(d, text) for d in dates
    )
    assert train_end is not None and test_end is not None
    if test_start is None:
        test_start = train_end + DAY
    if test_end < test_start or (train_start is not None and train_end < train_start):
        raise DataError(f"split {text!r}: a window ends before it starts", field="split")
    if test_start <= train_end:
        raise DataError(f"split {text!r}: the test window overlaps the train window", field="split")
    iso = tuple(None if d is None else d.strip() for d in dates)
    if iso[2] is None:
        iso = (iso[0], iso[1], _iso(test_start), iso[3])
    return SplitSpec(
        kind,
        text,
        train_window=(train_start, train_end + DAY),
        test_window=(test_start, test_end + DAY),
        dates=iso,
    )


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date().isoformat()


def _in(ts: np.ndarray, window: tuple[int | None, int | None]) -> np.ndarray:
    lo, hi = window
    mask = np.ones(ts.shape[0], dtype=bool) if lo is None else ts >= lo
    if hi is not None:
        mask &= ts < hi
    return mask


def assign_labels(
    spec: SplitSpec,
    n: int,
    *,
    timestamps: np.ndarray | None,
    seed: int,
    given_labels: np.ndarray | None = None,
) -> np.ndarray:
    """int8 label per row: TRAIN, VALID, TEST, HOLDOUT (later halved) or EXCLUDED."""
    if spec.needs_timestamps and timestamps is None:
        raise DataError(
            f"split {spec.text!r} needs timestamps, and the input has none", field="split"
        )
    labels = np.full(n, EXCLUDED, dtype=np.int8)
    if spec.kind in ("netflix", "time"):
        assert spec.train_window is not None and spec.test_window is not None
        labels[_in(timestamps, spec.train_window)] = TRAIN
        labels[_in(timestamps, spec.test_window)] = HOLDOUT
    elif spec.kind == "time-quantile":
        threshold = np.quantile(timestamps, spec.quantile, method="lower")
        labels[:] = HOLDOUT
        labels[timestamps <= threshold] = TRAIN
    elif spec.kind == "random":
        assert spec.fractions is not None
        order = np.random.default_rng([seed, 1]).permutation(n)
        n_train = round(n * spec.fractions[0])
        n_valid = round(n * spec.fractions[1])
        labels[order[:n_train]] = TRAIN
        labels[order[n_train : n_train + n_valid]] = VALID
        labels[order[n_train + n_valid :]] = TEST
    else:  # given, column: labels come from the files / the column
        if given_labels is None:
            raise DataError(f"split {spec.text!r} needs labelled input", field="split")
        labels[:] = given_labels
    return labels


@dataclass
class SplitReport:
    """What the split did, for meta.json and the CLI."""

    excluded_outside_windows: int = 0
    dropped_unseen: dict[str, int] = field(default_factory=dict)
    valid_from_train: int = 0
    threshold: str | None = None


def finalize(
    cols: Columns,
    spec: SplitSpec,
    *,
    seed: int,
    keep_unseen: bool = False,
    valid_fraction: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, SplitReport]:
    """Apply the common rules to labelled columns.

    1. Without any validation rows, a seeded `valid_fraction` of train becomes validation,
       leaving every user and item at least one training rating (data/carve.py).
    2. Maps come from train; valid/test/holdout rows with an unseen user or item are dropped
       (counted), unless `keep_unseen` (then the maps cover them too).
    3. Holdout rows are cut into exact halves: validation, test (seeded permutation).

    Returns (user_ids, item_ids, users, items) with -1 for dropped rows; labels are updated.
    """
    from deeprec.data.indexing import restrict

    labels = cols.labels
    report = SplitReport(excluded_outside_windows=int((labels == EXCLUDED).sum()))
    if spec.kind == "time-quantile" and cols.timestamps is not None:
        train_ts = cols.timestamps[labels == TRAIN]
        if train_ts.size:
            report.threshold = _iso(int(train_ts.max()))
    if not (labels == VALID).any() and not (labels == HOLDOUT).any() and valid_fraction > 0:
        # every user and item keeps a training rating, so no valid/test row becomes unseen
        train_rows = np.flatnonzero(labels == TRAIN)
        rng = np.random.default_rng([seed, 2])
        picked = carve_mask(cols.users[train_rows], cols.items[train_rows], valid_fraction, rng)
        labels[train_rows[picked]] = VALID
        report.valid_from_train = int(picked.sum())
    if not (labels == TRAIN).any():
        raise DataError(f"split {spec.text!r} leaves the training set empty", field="split")
    rows = labels >= 0 if keep_unseen else labels == TRAIN
    user_ids, users = restrict(cols.users, cols.user_ids, rows)
    item_ids, items = restrict(cols.items, cols.item_ids, rows)
    unseen = (labels > TRAIN) & ((users < 0) | (items < 0))
    kinds = (("holdout", HOLDOUT),) if spec.needs_timestamps else (("valid", VALID), ("test", TEST))
    for name, value in kinds:
        report.dropped_unseen[name] = int((unseen & (labels == value)).sum())
    labels[unseen] = EXCLUDED - 1  # UNSEEN
    holdout = np.flatnonzero(labels == HOLDOUT)
    if holdout.size:
        order = np.random.default_rng([seed, 3]).permutation(holdout.size)
        half = holdout.size // 2
        labels[holdout[order[:half]]] = VALID
        labels[holdout[order[half:]]] = TEST
    if not (labels == TEST).any():
        raise DataError(
            f"split {spec.text!r} leaves the test set empty (after dropping rows of users or "
            "items unseen in train)",
            field="split",
        )
    return user_ids, item_ids, users, items, report

"""Synthetic Netflix-like rating logs, written as Netflix Prize raw files or CSV.

Structure (all seeded, vectorised NumPy, generated in chunks of users):

* item popularity: Zipf-like power law (plus a small uniform floor so every item is rated);
* user activity: log-normal number of ratings per user (heavy tail), at least 1 each;
* ratings: global mean + user bias + item bias + low-rank taste (k=8) + noise, rounded and
  clipped to 1..5 stars;
* dates: users join over 1999-12-01..2005-12-31 following a growing rate and stay active for
  a random span, so later months hold most ratings (the netflix-3m/6m/1y windows are full and
  many December-2005 raters are already known from earlier months).

Items are drawn per user without replacement: popularity draws, de-duplicated, topped up
for the few users that lost draws; heavy users use the Gumbel top-k trick instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from deeprec.atomic import atomic_directory
from deeprec.errors import DataError

PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2_000, 500, 50_000),
    "small": (10_000, 2_000, 1_000_000),
    "medium": (100_000, 8_000, 10_000_000),
    "netflix": (480_189, 17_770, 100_480_507),
}
LAYOUTS = ("netflix", "netflix-combined", "netflix-both", "csv")
START = dt.date(1999, 12, 1)
END = dt.date(2005, 12, 31)
_EPOCH_DAY = (START - dt.date(1970, 1, 1)).days
_NETFLIX_MAX_USER_ID = 2_649_429
_RANK = 8


def synthesize(
    out: str | Path,
    *,
    preset: str = "small",
    n_users: int | None = None,
    n_items: int | None = None,
    n_ratings: int | None = None,
    fmt: str = "netflix",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate a log and write it under `out` (atomically). Returns the summary (synth.json).

    Layouts: ``netflix`` writes ``training_set/mv_*.txt``, ``netflix-combined`` writes
    ``combined_data_*.txt``, ``netflix-both`` both, ``csv`` a ``ratings.csv``
    (user,item,rating,date).
    """
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if fmt not in LAYOUTS:
        raise DataError(f"unknown synth format {fmt!r}; expected one of {', '.join(LAYOUTS)}")
    users, items, ratings = PRESETS[preset]
    users = n_users or users
    items = n_items or items
    ratings = n_ratings or ratings
    if users < 1 or items < 1 or ratings < users:
        raise DataError("need users >= 1, items >= 1 and ratings >= users (each user rates)")
    if ratings > users * items // 2:
        raise DataError(
            f"{ratings:,} ratings is more than half of {users:,} x {items:,}: too dense to "
            "generate realistically"
        )
    log = generate(users, items, ratings, seed=seed, progress=progress)
    layouts = {
        "netflix": ["training_set"],
        "netflix-combined": ["combined_data"],
        "netflix-both": ["training_set", "combined_data"],
        "csv": ["csv"],
    }[fmt]
    summary = {
        "generator": "deeprec.data.synth",
        "seed": seed,
        "preset": preset,
        "users": int(np.unique(log["user"]).shape[0]),
        "items": int(np.unique(log["item"]).shape[0]),
        "ratings": int(log["user"].shape[0]),
        "layouts": layouts,
        "dates": [START.isoformat(), END.isoformat()],
    }
    with atomic_directory(out, overwrite=overwrite, fsync=False) as tmp:
        if "training_set" in layouts or "combined_data" in layouts:
            _write_netflix(tmp, log, layouts, progress=progress)
        if "csv" in layouts:
            _write_csv(tmp / "ratings.csv", log)
        (tmp / "synth.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# --------------------------------------------------------------------------- generation
def _activity(rng: np.random.Generator, users: int, ratings: int, cap: int) -> np.ndarray:
    """Ratings per user: log-normal, >= 1, <= cap, summing exactly to `ratings`."""
    raw = rng.lognormal(mean=0.0, sigma=1.1, size=users)
    counts = np.clip(np.floor(raw / raw.sum() * ratings), 1, cap).astype(np.int64)
    for _ in range(100):
        diff = ratings - int(counts.sum())
        if diff == 0:
            break
        room = (cap - counts) if diff > 0 else (counts - 1)
        weights = room * counts.astype(np.float64)
        if weights.sum() == 0:
            raise DataError("cannot spread the ratings over the users within the limits")
        pick = rng.choice(users, size=min(abs(diff), users), p=weights / weights.sum())
        step = np.bincount(pick, minlength=users)
        step = np.minimum(step, room)
        counts += step if diff > 0 else -step
    if int(counts.sum()) != ratings:
        raise DataError("could not reach the requested number of ratings")
    return counts


def generate(
    n_users: int, n_items: int, n_ratings: int, *, seed: int = 0, progress: bool = False
) -> dict[str, np.ndarray]:
    """The log as arrays: user (raw id), item (1..n_items), rating (int8), day (since 1970)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    # Items: power-law popularity over a random ranking, biases, tastes.
    ranks = rng.permutation(n_items) + 1
    pop = ranks.astype(np.float64) ** -0.95
    pop = 0.97 * pop / pop.sum() + 0.03 / n_items
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    item_bias = rng.normal(0.0, 0.45, n_items) + 0.12 * (np.log(pop) - np.log(pop).mean())
    item_taste = rng.normal(0.0, 0.3, (n_items, _RANK)).astype(np.float32)
    # Users: activity, sparse raw ids, biases, tastes, active period.
    cap = max(1, min(n_items // 2, int(n_ratings)))
    counts = _activity(rng, n_users, n_ratings, cap)
    max_id = max(n_users, round(n_users * _NETFLIX_MAX_USER_ID / 480_189))
    raw_ids = np.sort(rng.choice(max_id, n_users, replace=False) + 1)[rng.permutation(n_users)]
    user_bias = rng.normal(0.0, 0.4, n_users)
    user_taste = rng.normal(0.0, 0.3, (n_users, _RANK)).astype(np.float32)
    # Dates: a daily rate growing over the years (December 2005 thinned, as in the real
    # sample); users join following that rate and rate within their active period, each
    # rating's day drawn from the rate restricted to the period (inverse CDF).
    span_days = (END - START).days
    rate = np.exp(np.arange(span_days + 1) / 2000.0)
    rate[(dt.date(2005, 12, 1) - START).days :] *= 0.25
    cum = np.concatenate(([0.0], np.cumsum(rate)))
    cum /= cum[-1]
    first = np.searchsorted(cum, rng.random(n_users), side="right") - 1
    active = rng.exponential(1000.0, n_users) + 20.0 * np.log1p(counts)
    last = np.minimum(span_days, first + np.ceil(active).astype(np.int64))

    heavy = counts > max(100, n_items // 10)
    # Filled in place (no final concatenation: peak memory stays near one copy of the log).
    out = {
        "user": np.empty(n_ratings, dtype=np.int64),
        "item": np.empty(n_ratings, dtype=np.int32),
        "rating": np.empty(n_ratings, dtype=np.int8),
        "day": np.empty(n_ratings, dtype=np.int32),
    }
    filled = 0
    chunk = max(1, int(8_000_000 // max(1, n_ratings / n_users)))
    starts = range(0, n_users, chunk)
    for start in tqdm(starts, desc="synth", unit="chunk", disable=not progress):
        sel = np.arange(start, min(start + chunk, n_users))
        light = sel[~heavy[sel]]
        big = sel[heavy[sel]]
        parts = []
        if light.size:
            parts.append(_draw_light(rng, light, counts[light], cdf, n_items))
        if big.size:
            parts.append(_draw_heavy(rng, big, counts[big], pop))
        users = np.concatenate([p[0] for p in parts])
        items = np.concatenate([p[1] for p in parts])
        n = users.shape[0]
        score = (
            3.6
            + user_bias[users]
            + item_bias[items]
            + np.einsum("ij,ij->i", user_taste[users], item_taste[items], dtype=np.float32) * 2.0
            + rng.normal(0.0, 0.7, n)
        )
        stars = np.clip(np.rint(score), 1, 5).astype(np.int8)
        lo, hi = cum[first[users]], cum[last[users] + 1]
        day = np.searchsorted(cum, lo + rng.random(n) * (hi - lo), side="right") - 1
        day = np.clip(day, first[users], last[users])
        part = slice(filled, filled + n)
        out["user"][part] = raw_ids[users]
        out["item"][part] = items + 1
        out["rating"][part] = stars
        out["day"][part] = day + _EPOCH_DAY
        filled += n
    return {name: values[:filled] for name, values in out.items()}


def _draw_light(
    rng: np.random.Generator, users: np.ndarray, counts: np.ndarray, cdf: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct popularity-weighted items per user: draw, de-duplicate, top up the shortfall.

    Top-ups draw twice the shortfall and trim the excess, so few rounds are needed; users
    that are complete leave the working set, so later rounds only sort the few left.
    """
    n = users.shape[0]
    local = np.arange(n, dtype=np.int64)
    counts = counts.astype(np.int64)
    keys = np.zeros(0, dtype=np.int64)  # sorted user*n_items+item of unfinished users
    done: list[np.ndarray] = []
    finished = np.zeros(n, dtype=bool)
    need = counts
    for round_no in range(40):
        if int(need.sum()) == 0:
            break
        who = np.repeat(local, need if round_no == 0 else 2 * need)
        what = np.searchsorted(cdf, rng.random(who.shape[0]), side="right").clip(0, n_items - 1)
        merged = np.sort(np.concatenate([keys, np.sort(who * n_items + what)]), kind="stable")
        merged = merged[np.concatenate(([True], merged[1:] != merged[:-1]))]
        owner = merged // n_items
        rank = np.arange(merged.shape[0]) - np.searchsorted(owner, local)[owner]
        keys = merged[rank < counts[owner]]
        have = np.bincount(keys // n_items, minlength=n)
        need = np.where(finished, 0, counts - have)
        newly = (need == 0) & ~finished
        finished |= newly
        leaving = newly[keys // n_items]
        done.append(keys[leaving])
        keys = keys[~leaving]
    keys = np.sort(np.concatenate([*done, keys]))
    who = keys // n_items
    return users[who], (keys % n_items).astype(np.int64)


def _draw_heavy(
    rng: np.random.Generator, users: np.ndarray, counts: np.ndarray, pop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sampling without replacement (Gumbel top-k) for very active users."""
    logp = np.log(pop)
    out_u, out_i = [], []
    batch = max(1, 4_000_000 // pop.shape[0])
    for s in range(0, users.shape[0], batch):
        sub = slice(s, s + batch)
        noisy = logp + rng.gumbel(size=(users[sub].shape[0], pop.shape[0]))
        order = np.argsort(-noisy, axis=1)
        for row, (user, k) in enumerate(zip(users[sub], counts[sub], strict=True)):
            out_u.append(np.full(int(k), user, dtype=np.int64))
            out_i.append(np.sort(order[row, : int(k)]))
    return np.concatenate(out_u), np.concatenate(out_i)


# --------------------------------------------------------------------------- writing
def _by_item(log: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order grouped by item (stable), the item ids present and their [start, end) rows."""
    order = np.argsort(log["item"], kind="stable")
    counts = np.bincount(log["item"])
    ids = np.flatnonzero(counts)
    ends = np.cumsum(counts)[ids]
    return order, ids, np.stack([ends - counts[ids], ends], axis=1)


def _lines(log: dict[str, np.ndarray], rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """`user,rating,YYYY-MM-DD` lines of `rows` and the byte offset after each line."""
    frame = pl.DataFrame(
        {
            "u": log["user"][rows],
            "r": log["rating"][rows],
            "d": pl.Series(log["day"][rows]).cast(pl.Date),
        }
    )
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    data = buffer.getvalue()
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    return data, ends


def _write_netflix(
    root: Path, log: dict[str, np.ndarray], layouts: list[str], *, progress: bool
) -> None:
    from tqdm import tqdm

    order, ids, bounds = _by_item(log)
    if "training_set" in layouts:
        (root / "training_set").mkdir()
    n_combined = 4 if ids.shape[0] >= 4 else 1
    combined_of = np.minimum(
        (np.arange(ids.shape[0]) * n_combined) // max(ids.shape[0], 1), n_combined - 1
    )
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(open(root / f"combined_data_{k + 1}.txt", "wb"))
            for k in range(n_combined if "combined_data" in layouts else 0)
        ]
        batch_rows = 4_000_000
        k = 0
        with tqdm(total=ids.shape[0], desc="write", unit="item", disable=not progress) as bar:
            while k < ids.shape[0]:
                stop = int(np.searchsorted(bounds[:, 0], bounds[k, 0] + batch_rows, side="left"))
                stop = max(stop, k + 1)
                lo, hi = int(bounds[k, 0]), int(bounds[stop - 1, 1])
                data, ends = _lines(log, order[lo:hi])
                for j in range(k, stop):
                    a, b = int(bounds[j, 0]) - lo, int(bounds[j, 1]) - lo
                    start = 0 if a == 0 else int(ends[a - 1])
                    block = b"%d:\n" % int(ids[j]) + data[start : int(ends[b - 1])]
                    if "training_set" in layouts:
                        (root / "training_set" / f"mv_{int(ids[j]):07d}.txt").write_bytes(block)
                    if handles:
                        handles[int(combined_of[j])].write(block)
                bar.update(stop - k)
                k = stop


def _write_csv(path: Path, log: dict[str, np.ndarray]) -> None:
    order, _, _ = _by_item(log)
    frame = pl.DataFrame(
        {
            "user": log["user"][order],
            "item": log["item"][order],
            "rating": log["rating"][order],
            "date": pl.Series(log["day"][order]).cast(pl.Date),
        }
    )
    frame.write_csv(path)

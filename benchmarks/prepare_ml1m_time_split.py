"""Prepare the ML-1M subset (users 1-2999) with a time split, for the experiment recipes.

Stop-gap until the `data` branch's readers and time-quantile split are merged: reads
``ratings.dat.gz`` (``UserID::MovieID::Rating::Timestamp``) with Polars, puts the latest
`--test-fraction` of ratings by timestamp in the test window, drops test-window ratings of
users/items absent from training (the paper's rule), and splits the rest 50/50 at random
(seeded) into validation and test.

    PYTHONPATH=src python benchmarks/prepare_ml1m_time_split.py \
        --ratings /work/shared/data/ml-1m-users1-2999/ratings.dat.gz --out /tmp/ml1m-time
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl

from deeprec.data.dataset import PreparedDataset


def read_ml1m(path: Path) -> pl.DataFrame:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="latin-1") as handle:
        rows = [line.rstrip("\n").split("::") for line in handle if line.strip()]
    arr = np.asarray(rows, dtype=np.int64)
    return pl.DataFrame(
        {
            "user": arr[:, 0],
            "item": arr[:, 1],
            "rating": arr[:, 2].astype(np.float32),
            "timestamp": arr[:, 3],
        }
    )


def time_split(
    table: pl.DataFrame, test_fraction: float, seed: int
) -> tuple[PreparedDataset, dict]:
    """Latest `test_fraction` of ratings (by timestamp, ties kept together) = test window."""
    cutoff = int(table.get_column("timestamp").quantile(1.0 - test_fraction, "higher"))
    train = table.filter(pl.col("timestamp") < cutoff)
    window = table.filter(pl.col("timestamp") >= cutoff)
    seen_users = train.get_column("user").unique().implode()
    seen_items = train.get_column("item").unique().implode()
    kept = window.filter(pl.col("user").is_in(seen_users) & pl.col("item").is_in(seen_items))
    rng = np.random.default_rng(seed)
    to_valid = rng.random(kept.height) < 0.5
    valid = kept.filter(pl.Series(to_valid))
    test = kept.filter(pl.Series(~to_valid))
    info = {
        "split": "time",
        "test_fraction": test_fraction,
        "cutoff_timestamp": cutoff,
        "seed": seed,
        "window_ratings": window.height,
        "window_dropped_unseen": window.height - kept.height,
        "source": "ml-1m-users1-2999/ratings.dat.gz",
        "prepared_by": "benchmarks/prepare_ml1m_time_split.py",
    }
    return PreparedDataset.from_tables(train, valid, test, meta=info), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    dataset, info = time_split(read_ml1m(args.ratings), args.test_fraction, args.seed)
    dataset.save(args.out, overwrite=args.overwrite)
    counts = {name: len(dataset.split(name)) for name in ("train", "valid", "test")}
    print(json.dumps({**info, **counts, "users": dataset.n_users, "items": dataset.n_items}))


if __name__ == "__main__":
    main()

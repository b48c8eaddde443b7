"""Small validation-only grid search for the baselines on ML-100K u1.

Fits on u1.base minus a seeded 5% validation part and ranks by validation RMSE; the test
file is never read. The winners become ``TUNED`` in compare_baselines.py. The grids are small on purpose (shared
2-core machine); docs/results/baselines_development.md has the wider l2 sweep for I-AutoRec
(l2 1..400, and mean-centred input) that narrowed them.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/tune_baselines.py \
        --data ../shared/data/ml-100k --out docs/results/baselines_tuning.md
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import torch

from _common import Timer, machine, markdown_table
from deeprec.atomic import atomic_file
from deeprec.baselines import AutoRec, BiasedMF, BiasOnly
from deeprec.baselines._common import clipped_rmse
from deeprec.data.dataset import PreparedDataset
from deeprec.experiments.protocols import carve_validation, read_tab_ratings


def grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


GRIDS = {
    "BiasOnly": (BiasOnly, grid(reg_user=[5.0, 10.0, 15.0, 25.0], reg_item=[5.0, 10.0, 25.0])),
    "BiasedMF": (
        BiasedMF,
        grid(n_factors=[50, 100], lr=[0.01], reg=[0.05, 0.1], epochs=[100], patience=[5]),
    ),
    "I-AutoRec": (
        AutoRec,
        grid(
            hidden=[500],
            l2=[100.0, 200.0],
            lr=[0.01],
            epochs=[400],
            patience=[25],
            eval_every=[2],
        ),
    ),
    "U-AutoRec": (
        AutoRec,
        grid(
            orientation=["user"],
            hidden=[500],
            l2=[100.0, 300.0],
            lr=[0.01],
            epochs=[400],
            patience=[25],
            eval_every=[2],
        ),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/baselines_tuning.md"))
    parser.add_argument("--models", nargs="*", default=list(GRIDS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = read_tab_ratings(args.data / "u1.base")
    train, valid = carve_validation(base, 0.05, seed=1)  # same carve as movielens_100k_folds
    dataset = PreparedDataset.from_tables(train, valid)
    rows = []
    for name in args.models:
        cls, candidates = GRIDS[name]
        for params in candidates:
            with Timer() as timer:
                model = cls(**params).fit(dataset)
            part = dataset.valid
            pred = model._predict_indices(part.users, part.items)
            rmse = clipped_rmse(pred, part.ratings, model.rating_range_)
            row = {
                "model": name,
                "params": json.dumps(params, sort_keys=True),
                "valid_rmse": f"{rmse:.4f}",
                "best_epoch": getattr(model, "best_epoch_", ""),
                "fit_seconds": f"{timer.seconds:.1f}",
            }
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    columns = ["model", "params", "valid_rmse", "best_epoch", "fit_seconds"]
    best = {}
    for row in rows:
        if row["model"] not in best or float(row["valid_rmse"]) < float(
            best[row["model"]]["valid_rmse"]
        ):
            best[row["model"]] = row
    text = "\n".join(
        [
            "# Baseline tuning on ML-100K u1 (validation only)",
            "",
            "Train: u1.base minus a seeded 5% validation part (seed 1, the same carve as",
            "`movielens_100k_folds`); ranked by clipped validation RMSE. u1.test is never read.",
            "",
            f"Command: `{' '.join(['python', 'benchmarks/tune_baselines.py', *sys.argv[1:]])}`",
            "",
            f"Machine: {machine()}. Times are wall-clock under that load.",
            "",
            "## Best per model",
            "",
            markdown_table(list(best.values()), columns),
            "",
            "## All runs",
            "",
            markdown_table(rows, columns),
            "",
        ]
    )
    with atomic_file(args.out, "w") as handle:
        handle.write(text)
    with atomic_file(args.out.with_suffix(".csv"), "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

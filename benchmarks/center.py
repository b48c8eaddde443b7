"""center=bias vs center=none for user-based DeepRec, numbers for docs/results/center.md.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python \
        benchmarks/center.py ml100k > center-ml100k.jsonl

`ml100k`: ML-100K u1.base/u1.test (validation: a seeded 5% of u1.base), a small grid of
user-based configs, each with center none and bias; selection is by the clipped validation
RMSE of `score(dataset, "valid")` (comparable across both modes), test RMSE is reported.
`ml100k-defaults`: the plain TrainConfig defaults, both modes, and BiasOnly.
`foldin CONFIG_JSON`: the fold-in protocol of benchmarks/fold_in.py on ML-100K u.data.
`ml1m CONFIG_JSON`: the ML-1M users 1-2999 subset, time split (latest 10%).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from deeprec import DeepRec
from deeprec.baselines.bias import BiasOnly
from deeprec.data.prepare import prepare_dataset
from deeprec.recommend.honesty import fold_in_honesty

DATA = Path(os.environ.get("DEEPREC_SHARED_DATA", "/work/shared/data"))
COMMON = dict(orientation="user", epochs=40, early_stopping=5)
GRID = {
    "defaults": {},
    "500-sigmoid-d0.5-wd1e-3-lr3e-3": dict(
        hidden=[500], activation="sigmoid", dropout=0.5, weight_decay=0.001, lr=0.003
    ),
    "500-selu-d0.8-wd1e-3-lr1e-3": dict(hidden=[500], dropout=0.8, weight_decay=0.001),
    "500-selu-d0.5-wd1e-2-lr3e-3": dict(hidden=[500], dropout=0.5, lr=0.003),
    "256x2-selu-d0.8-wd1e-3-lr1e-3": dict(dropout=0.8, weight_decay=0.001),
    "500-sigmoid-d0.65-wd3e-3-lr1e-3": dict(
        hidden=[500], activation="sigmoid", dropout=0.65, weight_decay=0.003
    ),
}


def evaluate(name: str, dataset, params: dict) -> dict:
    started = time.perf_counter()
    model = DeepRec(**params).fit(dataset)
    return dict(
        config=name,
        center=params.get("center", "none"),
        valid_rmse=round(model.score(dataset, "valid")["rmse"], 4),
        test_rmse=round(model.score(dataset, "test")["rmse"], 4),
        best_epoch=model.best_epoch_,
        seconds=round(time.perf_counter() - started, 1),
    )


def bias_only(name: str, dataset) -> dict:
    model = BiasOnly().fit(dataset)
    return dict(
        config=name,
        center="BiasOnly",
        valid_rmse=round(model.score(dataset, "valid")["rmse"], 4),
        test_rmse=round(model.score(dataset, "test")["rmse"], 4),
    )


def ml100k_u1():
    base = DATA / "ml-100k"
    return prepare_dataset(
        [base / "u1.base", base / "u1.test"], "movielens", "given", seed=0, valid_fraction=0.05
    )


def main() -> None:
    torch.set_num_threads(2)
    what = sys.argv[1]
    if what == "ml100k-defaults":  # the plain TrainConfig defaults (50 epochs, no stopping)
        dataset = ml100k_u1()
        print(json.dumps(bias_only("ml100k", dataset)), flush=True)
        for center in ("none", "bias"):
            print(json.dumps(evaluate("plain defaults", dataset, {"center": center})), flush=True)
    elif what == "ml100k":
        dataset = ml100k_u1()
        for name, overrides in GRID.items():
            for center in ("none", "bias"):
                row = evaluate(name, dataset, {**COMMON, **overrides, "center": center})
                print(json.dumps(row), flush=True)
    elif what == "ml1m":
        params = json.loads(sys.argv[2])
        path = DATA / "ml-1m-users1-2999" / "ratings.dat.gz"
        dataset = prepare_dataset([path], "movielens", "time-quantile:0.9", seed=0)
        print(json.dumps(bias_only("ml1m", dataset)), flush=True)
        for center in ("none", "bias"):
            print(json.dumps(evaluate("ml1m", dataset, {**params, "center": center})), flush=True)
    elif what == "foldin":
        params = json.loads(sys.argv[2])
        frame = pd.read_csv(
            DATA / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"]
        )
        report = fold_in_honesty(lambda: DeepRec(**params), frame, seed=0)
        print(json.dumps({"params": params, **report}), flush=True)
    else:
        raise SystemExit(f"unknown experiment {what!r}")


if __name__ == "__main__":
    main()

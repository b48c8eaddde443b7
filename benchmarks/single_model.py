"""Issue 18 part 3, "the best single autoencoder": trials of one model (no ensemble), chosen
on validation only (a seeded carve-out of the training data; the test split is printed for
the record, never used to choose). Results: docs/results/single_model.md.

usage: python benchmarks/single_model.py DATA 'json-overrides' ['json-overrides' ...]

DATA: ml100k (u1.base/u1.test, `given`; valid = seeded 10% of u1.base), filmtrust and mlls
(ml-latest-small) (`random:0.8,0.1,0.1`), ml1m (ML-1M users 1-2999, `time-quantile:0.9`).
Each override is applied on top of configs/ml-100k.yaml ("preset" = no overrides), or on
top of configs/NAME.yaml with {"config": "NAME", ...}; one JSON line per trial. 1 torch
thread unless DEEPREC_THREADS says otherwise.
{"refit": [s, ...], ...} (a list; true/false sets the config option `refit`) also
refits the chosen settings on train + validation (all the training ratings) for
round(s * the best epoch count) epochs, no validation, once per s, and prints each refit's
test RMSE under "refits" (validation chose only the epoch count).
{"shuffle_items": seed, ...} permutes the item indices first (the row order of an
item-based model: only global_kernel depends on it); validation only (test is NaN).
{"select_on_test": true, ...} is a diagnostic, never a result: GLocal-K's notebook protocol.
The model trains on train + validation with the test split in validation's place, so early
stopping (and the second phase's stop) read test; it prints the test RMSE so selected
("test_selected_on_test"), which says how much of a gap to a published test-selected figure
is the selection protocol rather than the model.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from deeprec.data.carve import with_validation_merged
from deeprec.data.dataset import PreparedDataset, Split
from deeprec.data.prepare import prepare_dataset
from deeprec.estimator import DeepRec
from deeprec.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPREC_SHARED_DATA", "/work/shared/data"))


def load(name: str) -> PreparedDataset:
    if name == "ml100k":
        base = SHARED / "ml-100k"
        files = [base / "u1.base", base / "u1.test"]
        return prepare_dataset(files, "movielens", "given", seed=0, valid_fraction=0.1)
    if name == "filmtrust":
        return prepare_dataset(
            [SHARED / "filmtrust" / "ratings.txt"],
            "csv",
            "random:0.8,0.1,0.1",
            seed=0,
            columns="user=0,item=1,rating=2",
        )
    if name == "mlls":
        path = SHARED / "ml-latest-small" / "ratings.csv"
        return prepare_dataset([path], "csv", "random:0.8,0.1,0.1", seed=0)
    if name == "ml1m":
        path = SHARED / "ml-1m-users1-2999" / "ratings.dat.gz"
        return prepare_dataset([path], "movielens", "time-quantile:0.9", seed=0)
    raise SystemExit(f"unknown data {name!r}")


def shuffled_items(data: PreparedDataset, seed: int) -> PreparedDataset:
    """The same ratings with the item indices (the rows of an item-based model) permuted:
    only the order of the rows changes, which only the global kernel can see."""
    perm = np.random.default_rng(seed).permutation(data.n_items)  # old index -> new index
    inverse = np.argsort(perm)

    def move(part: Split) -> Split:
        return replace(part, items=perm[part.items].astype(part.items.dtype))

    return replace(
        data,
        item_ids=data.item_ids[inverse],
        train=move(data.train),
        valid=move(data.valid),
        test=move(data.test),
        items=None,
    )


def refit_test(data: PreparedDataset, params: dict, model: DeepRec, scale: float) -> dict:
    """Test RMSE of the same settings trained on train + valid for the chosen epochs."""
    phases = getattr(model, "phase_best_epochs_", None) or [model.best_epoch_]
    epochs = [max(1, round(scale * e)) for e in phases]
    fixed = {**params, "epochs": epochs[0], "early_stopping": 0}
    if len(epochs) > 1:  # pre-training, then the global-kernel fine-tuning
        fixed["finetune_epochs"] = epochs[1]
    t = time.perf_counter()
    refit = DeepRec(**fixed).fit(with_validation_merged(data))
    return {
        "refit_test": round(refit.score(data, "test")["rmse"], 4),
        "refit_epochs": epochs,
        "refit_s": round(time.perf_counter() - t, 1),
    }


def test_selected(data: PreparedDataset, params: dict) -> dict:
    """Diagnostic only: the same settings trained on train + valid, stopped on test."""
    merged = with_validation_merged(data)
    trial = replace(merged, valid=data.test)
    fixed = {**params, "refit": False, "predict_inputs": "train", "predict_center": "train"}
    t = time.perf_counter()
    model = DeepRec(**fixed).fit(trial)
    curve = [r.valid_rmse for r in model.history_ if r.valid_rmse is not None]
    return {
        "test_selected_on_test": round(model.best_valid_rmse_, 4),
        "phase_best_epochs": getattr(model, "phase_best_epochs_", [model.best_epoch_]),
        "test_curve_every_10": [round(x, 4) for x in curve[9::10]],
        "s": round(time.perf_counter() - t, 1),
    }


def main() -> None:
    torch.set_num_threads(int(os.environ.get("DEEPREC_THREADS", "1")))
    data = load(sys.argv[1])
    for raw in sys.argv[2:]:
        overrides = json.loads(raw)
        name = overrides.pop("config", "ml-100k")
        # a list: this script's refits; true/false: the config option (TrainConfig.refit)
        scales = overrides.pop("refit") if isinstance(overrides.get("refit"), list) else []
        scales = [float(x) for x in scales]
        preset = TrainConfig.from_yaml(ROOT / "configs" / f"{name}.yaml").to_dict()
        params = {**preset, **overrides}
        shuffle = overrides.pop("shuffle_items", None)
        params = {k: v for k, v in params.items() if k != "shuffle_items"}
        if params.pop("select_on_test", False):
            result = {"data": sys.argv[1], "config": name, "overrides": overrides}
            print(json.dumps({**result, **test_selected(data, params)}), flush=True)
            continue
        if shuffle is not None:
            overrides["shuffle_items"] = shuffle
        trial = data if shuffle is None else shuffled_items(data, int(shuffle))
        t = time.perf_counter()
        model = DeepRec(**params).fit(trial)
        secs = time.perf_counter() - t
        # a shuffled trial's id map is unsorted, which raw-id lookups need: no test score
        test = model.score(trial, "test") if shuffle is None else {"rmse": float("nan")}
        phases = getattr(model, "phase_best_epochs_", [model.best_epoch_])
        if len(phases) > 1:  # the pre-training's best validation RMSE, before fine-tuning
            extra_phase = {
                "phase_best_epochs": phases,
                "pretrain_valid": round(model.history_[phases[0] - 1].valid_rmse, 4),
            }
        else:
            extra_phase = {}
        refits = [{"scale": x, **refit_test(trial, params, model, x)} for x in scales]
        extra = {**extra_phase, **({"refits": refits} if refits else {})}
        print(
            json.dumps(
                {
                    "data": sys.argv[1],
                    "valid": round(model.best_valid_rmse_, 4),
                    "test": round(test["rmse"], 4),
                    "best_epoch": model.best_epoch_,
                    "epochs_run": len(model.history_),
                    "s": round(secs, 1),
                    **extra,
                    "config": name,
                    "overrides": overrides,
                    "curve_every_5": [
                        (round(r.train_rmse, 4), round(r.valid_rmse, 4))
                        for r in model.history_[4::5]
                        if r.valid_rmse is not None
                    ],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

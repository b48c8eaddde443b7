"""Member and blend trials on ML-100K u1 for the ensemble preset (docs/results/model-tuning.md).

    python benchmarks/blend_trials.py fit TAG '{"orientation": "item", ...}'   # one member
    python benchmarks/blend_trials.py blend TAG1,TAG2,...                        # blend them
    python benchmarks/blend_trials.py groups A1,A2+B1,B2,B3+C1                   # as Ensemble
    python benchmarks/blend_trials.py ensemble configs/ml-100k-ensemble.yaml     # the library

`fit` trains one DeepRec (1 torch thread) on realdata.ml100k_u1() (u1.base less a seeded 5%
validation part; u1.test) and stores its unclipped validation and test predictions in
$BLEND_DIR (default /tmp/deeprec-blend/TAG.npz); it prints validation and test RMSE (clipped).
`blend` fits least-squares weights (with intercept, as deeprec.ensemble does) on the
validation predictions only and prints validation and test RMSE of the blend and of the
plain mean. `groups` blends as deeprec.ensemble does: the tags of a group (one member entry,
its seeds) are averaged, then one least-squares weight per group plus an intercept.
Test predictions are only ever reported, never used to choose.
`ensemble` fits deeprec.ensemble.Ensemble from an ensemble YAML on the same split and prints
its validation/test RMSE, member RMSEs and weights.
Run each `fit` / `ensemble` under `flock /tmp/deeprec-heavy.lock` (10-40 s each).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata
from deeprec.ensemble import fit_blend
from deeprec.estimator import DeepRec

OUT = Path(os.environ.get("BLEND_DIR", "/tmp/deeprec-blend"))


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, 1.0, 5.0) - truth) ** 2)))


def fit(tag: str, params: dict) -> None:
    torch.set_num_threads(1)
    dataset = realdata.ml100k_u1()
    started = time.perf_counter()
    model = DeepRec(**params).fit(dataset)
    seconds = time.perf_counter() - started
    arrays = {}
    for split in ("valid", "test"):
        part = dataset.split(split)
        users, items = part.users.astype(np.int64), part.items.astype(np.int64)
        arrays[split] = model._predict_indices(users, items)
        arrays[f"{split}_truth"] = part.ratings.astype(np.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / f"{tag}.npz", **arrays)
    row = {
        "tag": tag,
        "valid": round(_rmse(arrays["valid"], arrays["valid_truth"]), 4),
        "test": round(_rmse(arrays["test"], arrays["test_truth"]), 4),
        "best_epoch": model.best_epoch_,
        "s": round(seconds, 1),
        **params,
    }
    print(json.dumps(row), flush=True)


def _lsq_blend(valid: np.ndarray, test: np.ndarray, truth_v, truth_t) -> dict:
    """Least-squares blend weights fitted on validation columns; RMSE on valid and test."""
    weights, intercept = fit_blend(valid, truth_v, "lsq")
    return {
        "lsq_valid": round(_rmse(valid @ weights + intercept, truth_v), 4),
        "lsq_test": round(_rmse(test @ weights + intercept, truth_t), 4),
        "weights": [round(float(w), 3) for w in weights],
        "intercept": round(intercept, 3),
    }


def blend(tags: list[str]) -> None:
    loaded = [np.load(OUT / f"{tag}.npz") for tag in tags]
    truth_v, truth_t = loaded[0]["valid_truth"], loaded[0]["test_truth"]
    valid = np.stack([x["valid"] for x in loaded], axis=1)
    test = np.stack([x["test"] for x in loaded], axis=1)
    row = {"members": tags, **_lsq_blend(valid, test, truth_v, truth_t)}
    row["mean_valid"] = round(_rmse(valid.mean(axis=1), truth_v), 4)
    row["mean_test"] = round(_rmse(test.mean(axis=1), truth_t), 4)
    print(json.dumps(row))


def groups(spec: str) -> None:
    tag_groups = [group.split(",") for group in spec.split("+")]
    valid_cols, test_cols = [], []
    for group in tag_groups:
        loaded = [np.load(OUT / f"{tag}.npz") for tag in group]
        valid_cols.append(np.mean([x["valid"] for x in loaded], axis=0))
        test_cols.append(np.mean([x["test"] for x in loaded], axis=0))
        truth_v, truth_t = loaded[0]["valid_truth"], loaded[0]["test_truth"]
    valid, test = np.stack(valid_cols, axis=1), np.stack(test_cols, axis=1)
    row = {"groups": spec, **_lsq_blend(valid, test, truth_v, truth_t)}
    row["group_valid"] = [round(_rmse(valid[:, k], truth_v), 4) for k in range(len(tag_groups))]
    row["group_test"] = [round(_rmse(test[:, k], truth_t), 4) for k in range(len(tag_groups))]
    print(json.dumps(row))


def ensemble(path: str) -> None:
    from deeprec.ensemble import Ensemble, read_ensemble_yaml

    torch.set_num_threads(1)
    dataset = realdata.ml100k_u1()
    started = time.perf_counter()
    model = Ensemble(**read_ensemble_yaml(path)).fit(dataset)
    seconds = time.perf_counter() - started
    test = model.score(dataset, "test")
    print(
        json.dumps(
            {
                "config": path,
                "valid": round(model.valid_rmse_, 4),
                "test": round(test["rmse"], 4),
                "s": round(seconds, 1),
                "member_valid": [round(v, 4) for v in model.member_valid_rmse_],
                "member_test": [
                    round(_rmse(m.predict(*_raw(dataset), clip=False), _truth(dataset)), 4)
                    for m in model.members_
                ],
                "member_best_epochs": [m.best_epoch_ for m in model.members_],
                "group_weights": [round(float(w), 3) for w in model.group_weights_],
                "intercept": round(model.intercept_, 3),
            }
        )
    )


def _raw(dataset) -> tuple[np.ndarray, np.ndarray]:
    return dataset.user_ids[dataset.test.users], dataset.item_ids[dataset.test.items]


def _truth(dataset) -> np.ndarray:
    return dataset.test.ratings.astype(np.float64)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "fit":
        fit(sys.argv[2], json.loads(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "ensemble":
        ensemble(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "groups":
        groups(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "blend":
        blend(sys.argv[2].split(","))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

"""Tiny hyper-parameter trial runner: selection is by validation RMSE (test printed for the record).

usage: python benchmarks/tune.py DATASET 'json-overrides' ['json-overrides' ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata
from deeprec.estimator import DeepRec


def main() -> None:
    torch.set_num_threads(1)
    ds = realdata.LOADERS[sys.argv[1]]()
    for raw in sys.argv[2:]:
        params = json.loads(raw)
        t = time.perf_counter()
        model = DeepRec(**params).fit(ds)
        secs = time.perf_counter() - t
        test = model.score(ds, "test")
        print(
            json.dumps(
                {
                    "data": sys.argv[1],
                    "valid": round(model.best_valid_rmse_, 4),
                    "best_epoch": model.best_epoch_,
                    "test": round(test["rmse"], 4),
                    "s": round(secs, 1),
                    "curve": [
                        round(r.valid_rmse, 4)
                        for r in model.history_[4::5]
                        if r.valid_rmse is not None
                    ],
                    **params,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

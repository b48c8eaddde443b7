"""`DeepRec(seed=S)` as the checked-out code ships it (selection, then the refit), on sets of
benchmarks/generalization_sets.py, for several model seeds: the seed spread that a change
to the defaults must beat (generalization.py measures seed 0 only).

    PYTHONPATH=src python benchmarks/defaults_seeds.py LABEL SET[,SET...] SEED[,SEED...]

1 torch thread. One JSON line per (set, seed): test RMSE, fit seconds, winner, its
validation RMSE. LABEL names the code measured (e.g. a commit).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deeprec import DeepRec
from generalization_sets import SETS


def main() -> None:
    torch.set_num_threads(1)
    label, names, seeds = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    for name in names:
        data = SETS[name][1]()
        for seed in map(int, seeds):
            started = time.perf_counter()
            model = DeepRec(seed=seed).fit(data)
            seconds = time.perf_counter() - started
            result = {
                "code": label,
                "set": name,
                "seed": seed,
                "test": round(model.score(data.to_pandas("test"))["rmse"], 4),
                "s": round(seconds, 1),
                "winner": model.selection_["winner"],
                "valid": round(model.best_valid_rmse_, 5),
            }
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

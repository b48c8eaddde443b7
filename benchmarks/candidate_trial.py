"""One defaults candidate (deeprec.selection.candidates) with overrides, on a set of
benchmarks/generalization_sets.py: the validation RMSE the selection would compare, and the
test RMSE of that fit (no refit). For trying a change to the candidates before re-running
the whole generalization benchmark.

    PYTHONPATH=src python benchmarks/candidate_trial.py SET 'JSON' ['JSON' ...]

JSON: {"base": "user-deep" | "item-wide" | "item-wide-raw", "l2x": factor on its
weight_decay (default 1), any DeepRec keyword: value}. 1 torch thread. One JSON line each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deeprec import DeepRec
from deeprec.selection.candidates import FIRST_ROUND
from generalization_sets import SETS


def main() -> None:
    torch.set_num_threads(1)
    name = sys.argv[1]
    data = SETS[name][1]()
    for raw in sys.argv[2:]:
        trial = json.loads(raw)
        overrides = dict(trial)
        settings = dict(FIRST_ROUND[overrides.pop("base")])
        settings["weight_decay"] *= overrides.pop("l2x", 1.0)
        started = time.perf_counter()
        model = DeepRec(**{**settings, "refit": False, **overrides}).fit(data)
        seconds = time.perf_counter() - started
        result = {
            "set": name,
            "trial": trial,
            "valid": round(model.best_valid_rmse_, 5),
            "test": round(model.score(data.to_pandas("test"))["rmse"], 4),
            "phase_best_epochs": model.phase_best_epochs_,
            "s": round(seconds, 1),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Where a Netflix-scale fp32 step spends its time per output strategy, and what the probes say.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/output_strategy_phases.py

A diagnostic for the output-strategy planner (src/deeprec/step/fast.py): 12,000 users
drawn like benchmarks/netflix_scale_epoch.py's synthetic Netflix (17,768 items, ~209 ratings
per user), the paper's Full architecture in fp32, 14 batches of 128. For `gather` and
`sparse` pinned, the median time of each phase of a real step (batches 4-14); then the
one-off probes' estimate of every output strategy's cost on the first batch.
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
import netflix_scale_epoch as netflix
from deeprec.data.batching import epoch_order, iter_row_batches
from deeprec.step import fast as fast_step
from deeprec.train.optim import build_optimizer
from deeprec.train.step import make_step
from deeprec.train.trainer import build_model

USERS = 12_000


def full_architecture_step(n_items: int):
    config = netflix.full_architecture_config("fp32", refeed=0)
    torch.manual_seed(0)
    model = build_model(config, n_items)
    return make_step(model, build_optimizer(model.parameters(), config), config)


def timed_phases(step) -> dict[str, list[float]]:
    """Wrap the step's phases with timers; returns the lists they append to."""
    phases: dict[str, list[float]] = {}
    targets = [
        (step.net, "hidden_forward"),
        (step.net, "sparse_output_loss"),
        (step.net, "hidden_backward"),
        (step, "_update"),
    ]
    for owner, name in targets:
        inner = getattr(owner, name)
        record = phases.setdefault(name, [])

        def timed(*args, _inner=inner, _record=record, **kwargs):
            start = time.perf_counter()
            result = _inner(*args, **kwargs)
            _record.append(time.perf_counter() - start)
            return result

        setattr(owner, name, timed)
    return phases


def main() -> None:
    torch.set_num_threads(2)
    netflix.N_USERS = USERS
    netflix.TARGET = int(100_480_507 * USERS / 480_189)
    matrix = netflix.synthetic_netflix()
    rows = np.flatnonzero(matrix.row_lengths() > 0)
    order = epoch_order(rows, 1, 1)
    batches = list(iter_row_batches(matrix, order[: 128 * 14], 128, prepare=True))
    report: dict = {"users": USERS, "items": matrix.shape[1], "ratings": matrix.nnz}
    for strategy in ("gather", "sparse"):
        os.environ["DEEPREC_OUTPUT_STRATEGY"] = strategy
        os.environ["DEEPREC_INPUT_STRATEGY"] = "sparse"
        step = full_architecture_step(matrix.shape[1])
        phases = timed_phases(step)
        for batch in batches:
            step(batch)
        report[f"{strategy} pinned, ms per step phase (median)"] = {
            name: round(float(np.median(times[3:])) * 1000, 1) for name, times in phases.items()
        }
    os.environ.pop("DEEPREC_OUTPUT_STRATEGY")
    os.environ.pop("DEEPREC_INPUT_STRATEGY")
    step = full_architecture_step(matrix.shape[1])
    first = batches[0]
    rates = fast_step._time_strategies(step.net, first, fast_step.OUTPUT_STRATEGIES)
    width = step.net.out_width()
    report["probe estimate for the first batch, ms"] = {
        name: round(rates[name] * fast_step._work(name, first, width) * 1000, 1)
        for name in fast_step.OUTPUT_STRATEGIES
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

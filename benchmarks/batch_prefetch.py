"""Where a training epoch should build its batches: on a prefetch thread, in line, or (as a
lower bound) all before the epoch.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python \\
        benchmarks/batch_prefetch.py --out docs/results/batch_prefetch.json
    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python \\
        benchmarks/batch_prefetch.py --data netflix --reps 6 \\
        --out docs/results/batch_prefetch_netflix.json

The benchmarks' model (n,512,512,1024, dp 0.8, momentum SGD, batch 128, compute=fast):
- ml-1m: the ML-1M subset, fp32 and bf16 without re-feeding (the shortest steps, where
  batch building weighs most); a repetition is one epoch (24 batches);
- netflix: the first `--users` users of the synthetic Netflix-scale data (17,768 items), bf16
  without and with one re-feed step and fp32 with one; a repetition is `--batches` batches.
Every repetition runs the same batches in the same order; the three ways take turns (order
reversed every other repetition), and the medians and minima over `reps` are reported. A
prefetch thread can only hide batch building when a core is free of torch's threads: the
report gives both counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts
from _speed_common import emit_report, load_movielens_dat
from deeprec.data.batching import epoch_order, iter_row_batches, prefetch
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import OrientedData
from netflix_scale_epoch import full_architecture_config, synthetic_netflix
from train_speed import DEFAULT_DATA, make_trainer

WAYS = ("prebuilt", "inline", "prefetch")


def epoch_runners(trainer, train, order) -> dict[str, Callable[[], float]]:
    """One epoch's steps, timed, for each way of building the batches."""

    def batches():
        return iter_row_batches(train, order, 128, prepare=True)

    def timed(make_source, build_first: bool) -> Callable[[], float]:
        def run() -> float:
            # a generator builds nothing until iterated: only `prebuilt` builds untimed
            source = list(make_source()) if build_first else make_source()
            start = time.perf_counter()
            for batch in source:
                trainer.step(batch)
            return time.perf_counter() - start

        return run

    return {
        "prebuilt": timed(batches, build_first=True),
        "inline": timed(batches, build_first=False),
        "prefetch": timed(lambda: prefetch(batches()), build_first=False),
    }


def settings(name: str) -> dict[str, TrainConfig]:
    if name == "netflix":
        return {
            f"{precision}-refeed{refeed}": full_architecture_config(precision, refeed)
            for precision, refeed in (("bf16", 0), ("bf16", 1), ("fp32", 1))
        }
    common = {"activation": "selu", "dropout": 0.8, "optimizer": "sgd", "momentum": 0.9}
    return {
        precision: TrainConfig(
            hidden=[512, 512, 1024], lr=0.001, batch_size=128, precision=precision, seed=1, **common
        )
        for precision in ("fp32", "bf16")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", choices=("ml-1m", "netflix"), default="ml-1m")
    parser.add_argument("--users", type=int, default=40_000, help="netflix: first N users")
    parser.add_argument("--batches", type=int, default=20, help="netflix: batches per rep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data == "netflix":
        train = synthetic_netflix(users=args.users)
        valid = train
        source = {"synthetic_netflix_users": args.users, "batches_per_rep": args.batches}
    else:
        train, valid = load_movielens_dat(DEFAULT_DATA)
        source = {"path": DEFAULT_DATA, "batches_per_rep": "one epoch"}
    data = OrientedData(train=train, valid=valid, test=valid)
    report: dict = {
        "machine": machine_facts(),
        "data": {**source, "users": train.shape[0], "items": train.shape[1]},
        "torch_threads": args.threads,
        "cpu_cores_available": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg(),
        "reps": args.reps,
        "results": {},
    }
    for name, config in settings(args.data).items():
        trainer = make_trainer(config, data, train.shape[1])
        order = epoch_order(trainer.train_rows, 1, 1)
        if args.data == "netflix":
            order = order[: args.batches * config.batch_size]
        runners = epoch_runners(trainer, train, order)
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        for run in runners.values():  # warm-up: builds, allocator
            run()
        for rep in range(args.reps):
            for way in WAYS if rep % 2 == 0 else reversed(WAYS):
                seconds[way].append(runners[way]())
        median = {way: statistics.median(seconds[way]) for way in WAYS}
        report["results"][name] = {
            "epoch_seconds_median": {way: round(median[way], 4) for way in WAYS},
            "epoch_seconds_min": {way: round(min(seconds[way]), 4) for way in WAYS},
            "prefetch_over_inline": round(median["prefetch"] / median["inline"], 3),
            "inline_over_prebuilt": round(median["inline"] / median["prebuilt"], 3),
        }
        print(name, report["results"][name], file=sys.stderr, flush=True)
    report["load_average_after"] = os.getloadavg()
    emit_report(report, args.out)


if __name__ == "__main__":
    main()

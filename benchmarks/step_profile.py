"""Where a fast training step's time goes, op by op (torch.profiler self times), for the
benchmarks' model (n,512,512,1024,dp0.8,512,512,n, SELU, momentum SGD 0.9, batch 128) on
the ML-1M subset or on a prefix of the synthetic Netflix-scale data.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/step_profile.py --data ml-1m --precision bf16 --refeed 0 \
        --out docs/results/step_profile_ml1m_bf16.json
    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/step_profile.py --data netflix --users 40000 --precision bf16 --refeed 1 \
        --out docs/results/step_profile_netflix_bf16_refeed1.json

After `--warmup` steps (kernel builds, compiling), `--steps` steps run once without
the profiler (median wall time per step) and once under it. Reported per step: the wall
time, and the self time of each of the `--top` most expensive ops (compiled kernels appear
as `## Call CompiledFxGraph ...`; the profiler inflates Python-side costs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, load_movielens_dat
from deeprec.data.batching import epoch_order, iter_row_batches
from deeprec.step.fast import FastStep
from deeprec.train.optim import build_optimizer
from deeprec.train.trainer import build_model
from netflix_scale_epoch import full_architecture_config, synthetic_netflix
from train_speed import DEFAULT_DATA


def load(name: str, users: int):
    if name == "ml-1m":
        return load_movielens_dat(DEFAULT_DATA)[0], {"path": DEFAULT_DATA, "split": "train"}
    return synthetic_netflix(users=users), {"synthetic_netflix_users": users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", choices=("ml-1m", "netflix"), default="ml-1m")
    parser.add_argument("--users", type=int, default=40_000, help="netflix: first N users")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--refeed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    matrix, data_info = load(args.data, args.users)
    rows = np.flatnonzero(matrix.row_lengths() > 0)
    order = epoch_order(rows, 1, 1)[: 128 * (args.warmup + args.steps)]
    batches = list(iter_row_batches(matrix, order, 128, prepare=True))
    config = full_architecture_config(args.precision, args.refeed)
    with torch.no_grad():
        torch.manual_seed(0)
        model = build_model(config, matrix.shape[1])
        step = FastStep(
            model,
            build_optimizer(model.parameters(), config),
            precision=args.precision,
            refeed_steps=args.refeed,
        )
        for batch in batches[: args.warmup]:
            step(batch)
        timed = batches[args.warmup :]
        seconds = []
        for batch in timed:
            start = time.perf_counter()
            step(batch)
            seconds.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in timed:
                step(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    n = len(timed)
    report = {
        "data": {"name": args.data, "items": matrix.shape[1], **data_info},
        "precision": args.precision,
        "refeed_steps": args.refeed,
        "threads": args.threads,
        "steps": n,
        "output_strategy_counts": dict(step.planner.counts),
        "step_ms_median_without_profiler": round(float(np.median(seconds)) * 1e3, 2),
        "step_ms_under_profiler_self_total": round(
            sum(e.self_cpu_time_total for e in events) / n / 1e3, 2
        ),
        "self_ms_per_step": {
            e.key[:60]: round(e.self_cpu_time_total / n / 1e3, 3) for e in events[: args.top]
        },
        "calls_per_step": {e.key[:60]: e.count / n for e in events[: args.top]},
    }
    print(json.dumps(report["self_ms_per_step"], indent=1), file=sys.stderr)
    emit_report(report, args.out)


if __name__ == "__main__":
    main()

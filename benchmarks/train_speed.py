"""Training speed on the ML-1M subset: reference vs fast fp32 vs fast bf16, in ONE run.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python \
        benchmarks/train_speed.py --out docs/results/train_speed.json

User-based, n,512,512,1024,dp0.8,512,512,n, SELU, momentum SGD 0.9, batch 128, every
configuration with and without one re-feed step, same seed and data order. Prints JSON.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts
from _speed_common import (
    emit_report,
    load_movielens_dat,
    matmul_peak,
    min_seconds,
    profile_steps,
)
from deeprec.data.batching import epoch_order, iter_row_batches, prefetch_depth
from deeprec.train.config import TrainConfig
from deeprec.train.evaluation import evaluate_sse
from deeprec.train.trainer import OrientedData, Trainer, build_model

DEFAULT_DATA = "/work/shared/data/ml-1m-users1-2999/ratings.dat.gz"


def dense_flops_per_step(n: int, hidden: list[int], batch: int, refeed: int) -> float:
    """GEMM FLOPs of the reference (dense) step: forward, weight and input gradients."""
    sizes = [n, *hidden, *reversed(hidden[:-1]), n]
    pairs = list(itertools.pairwise(sizes))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    first = 2 * batch * pairs[0][0] * pairs[0][1]
    per_pass = 3 * fwd - first  # no gradient w.r.t. the input
    return per_pass * (1 + refeed)


def make_trainer(config: TrainConfig, data: OrientedData, n_items: int) -> Trainer:
    torch.manual_seed(config.seed)
    model = build_model(config, n_items)
    return Trainer(model, config, data, rating_range=(1.0, 5.0))


def train_interleaved(trainers: dict[str, Trainer], epochs: int, threads: int) -> dict[str, list]:
    """Epoch e of every configuration before epoch e+1 of any (order reversed every other
    epoch), so load from other work on the shared machine hits all configurations alike."""
    history: dict[str, list] = {name: [] for name in trainers}
    names = list(trainers)
    for epoch in range(1, epochs + 1):
        for name in names if epoch % 2 else reversed(names):
            torch.manual_seed(epoch)  # same dropout draws for every configuration
            torch.set_num_threads(trainers[name].config.threads or threads)
            print(f"epoch {epoch} {name}", file=sys.stderr, flush=True)
            history[name].append(trainers[name]._run_epoch(epoch, True))
    torch.set_num_threads(threads)
    return history


def summarize(trainer: Trainer, records: list, data: OrientedData, profile_batches: int) -> dict:
    config = trainer.config
    epochs = [r.epoch_seconds for r in records]
    steady = epochs[1:] if len(epochs) > 1 else epochs
    order = epoch_order(trainer.train_rows, 999, 1)
    batches = list(
        iter_row_batches(
            data.train,
            order[: profile_batches * config.batch_size],
            config.batch_size,
            prepare=config.compute == "fast",
        )
    )
    out = {
        "epoch_seconds": [round(s, 3) for s in epochs],
        "epoch_seconds_median_after_first": round(statistics.median(steady), 3),
        "epoch_seconds_min_after_first": round(min(steady), 3),
        "eval_seconds_median": round(statistics.median(r.eval_seconds for r in records), 3),
        "valid_rmse_per_epoch": [round(r.valid_rmse, 5) for r in records],
        "valid_rmse_last": records[-1].valid_rmse,
        "train_rmse_last": records[-1].train_rmse,
        "breakdown": profile_steps(trainer.step, batches),
    }
    planner = getattr(trainer.step, "planner", None)
    if planner is not None:
        out["output_strategy_counts"] = planner.counts
    return out


def batch_building(data: OrientedData, batch_size: int, prepare: bool) -> float:
    rows = np.flatnonzero(data.train.row_lengths() > 0)
    order = epoch_order(rows, 7, 1)
    start = time.perf_counter()
    n = 0
    for _ in iter_row_batches(data.train, order, batch_size, prepare=prepare):
        n += 1
    return (time.perf_counter() - start) / n * 1e3


def eval_time(model, data: OrientedData, compute: str, repeats: int = 3) -> float:
    return min_seconds(
        lambda: evaluate_sse(model, data.train, data.valid, batch_size=1024, compute=compute),
        reps=repeats,
        warmup=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile-batches", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, valid = load_movielens_dat(args.data)
    data = OrientedData(train=train, valid=valid, test=valid)
    n_items = train.shape[1]
    hidden = [512, 512, 1024]
    report: dict = {
        "machine": machine_facts(),
        "load_average_before": os.getloadavg(),
        "data": {
            "path": args.data,
            "users": train.shape[0],
            "items": n_items,
            "train_ratings": train.nnz,
            "valid_ratings": valid.nnz,
            "split": "seeded random 10% of ratings held out (seed 0)",
        },
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "epochs": args.epochs,
    }
    shapes = [(128, n_items, 512), (128, 512, n_items), (n_items, 128, 512), (128, 512, 1024)]
    shapes.append((1024, 1024, 1024))
    report["peak_fp32"] = matmul_peak(torch.float32, shapes)
    report["peak_bf16"] = matmul_peak(torch.bfloat16, shapes)
    modes = [("reference", "fp32"), ("fast", "fp32"), ("fast", "bf16")]
    configs: dict[str, TrainConfig] = {}
    for refeed in (0, 1):
        for compute, precision in modes:
            configs[f"{compute}-{precision}-refeed{refeed}"] = TrainConfig(
                hidden=hidden,
                activation="selu",
                dropout=0.8,
                optimizer="sgd",
                lr=0.005 if refeed else 0.001,
                momentum=0.9,
                batch_size=128,
                epochs=args.epochs,
                refeed_steps=refeed,
                compute=compute,
                precision=precision,
                seed=1,
            )
    # opt-in throughput setting that changes the math: 4x batch with 4x lr (linear scaling)
    configs["fast-bf16-refeed0-batch512-lr4x"] = TrainConfig(
        hidden=hidden,
        activation="selu",
        dropout=0.8,
        optimizer="sgd",
        lr=0.004,
        momentum=0.9,
        batch_size=512,
        epochs=args.epochs,
        compute="fast",
        precision="bf16",
        seed=1,
    )
    # rounding-noise control: the reference itself with another thread count (other GEMM
    # blocking, so other float32 rounding); its RMSE gap to the reference is the noise floor
    control = configs["reference-fp32-refeed1"].to_dict()
    control["threads"] = 1 if args.threads != 1 else 2
    configs["control-reference-fp32-refeed1-other-threads"] = TrainConfig(**control)
    control0 = configs["reference-fp32-refeed0"].to_dict()
    control0["threads"] = control["threads"]
    configs["control-reference-fp32-refeed0-other-threads"] = TrainConfig(**control0)
    trainers = {name: make_trainer(c, data, n_items) for name, c in configs.items()}
    history = train_interleaved(trainers, args.epochs, args.threads)
    runs: dict = {}
    n_rows = np.count_nonzero(train.row_lengths())
    for name, trainer in trainers.items():
        config = trainer.config
        runs[name] = summarize(trainer, history[name], data, args.profile_batches)
        flops = dense_flops_per_step(n_items, hidden, config.batch_size, config.refeed_steps)
        n_batches = math.ceil(n_rows / config.batch_size)
        secs = runs[name]["epoch_seconds_median_after_first"]
        peak = report[f"peak_{config.precision}"]["gflops"]
        runs[name]["dense_equivalent_gflops"] = round(flops * n_batches / secs / 1e9, 1)
        runs[name]["dense_equivalent_fraction_of_peak"] = round(
            flops * n_batches / secs / 1e9 / peak, 3
        )
        runs[name]["matmul_fraction_of_peak"] = round(
            runs[name]["breakdown"]["matmul_gflops"] / peak, 3
        )
    report["runs"] = runs

    def ratio(a: str, b: str, key: str = "epoch_seconds_median_after_first") -> float:
        return round(runs[a][key] / runs[b][key], 3)

    step_ms = runs["fast-fp32-refeed0"]["breakdown"]["step_ms_under_profiler"]
    build_ms = batch_building(data, 128, prepare=True)
    torch.manual_seed(1)
    model = build_model(TrainConfig(hidden=hidden, dropout=0.8), n_items)
    report["evaluation_seconds"] = {
        "reference_dense_input": round(eval_time(model, data, "reference"), 4),
        "fast_sparse_input": round(eval_time(model, data, "fast"), 4),
        "valid_ratings": valid.nnz,
    }
    report["batch_building"] = {
        "ms_per_batch_with_column_order": round(build_ms, 3),
        "fast_fp32_step_ms": step_ms,
        "fraction_of_step": round(build_ms / step_ms, 4),
        "prefetch_depth_in_training": prefetch_depth(),
        "note": "built in training on a prefetch thread where a core is free of torch's "
        "threads, else in line (deeprec.data.batching.prefetch_depth)",
    }
    report["load_average_after"] = os.getloadavg()
    report["targets"] = {
        "fast_fp32_vs_reference_refeed0 (>=1.3)": ratio(
            "reference-fp32-refeed0", "fast-fp32-refeed0"
        ),
        "fast_fp32_vs_reference_refeed1 (>=1.2)": ratio(
            "reference-fp32-refeed1", "fast-fp32-refeed1"
        ),
        "fast_bf16_vs_fast_fp32_refeed0 (>=1.4)": ratio("fast-fp32-refeed0", "fast-bf16-refeed0"),
        "fast_bf16_vs_fast_fp32_refeed1 (>=1.4)": ratio("fast-fp32-refeed1", "fast-bf16-refeed1"),
        "same ratios from the fastest epoch of each": {
            "fast_fp32_vs_reference_refeed0": ratio(
                "reference-fp32-refeed0", "fast-fp32-refeed0", "epoch_seconds_min_after_first"
            ),
            "fast_fp32_vs_reference_refeed1": ratio(
                "reference-fp32-refeed1", "fast-fp32-refeed1", "epoch_seconds_min_after_first"
            ),
            "fast_bf16_vs_fast_fp32_refeed0": ratio(
                "fast-fp32-refeed0", "fast-bf16-refeed0", "epoch_seconds_min_after_first"
            ),
            "fast_bf16_vs_fast_fp32_refeed1": ratio(
                "fast-fp32-refeed1", "fast-bf16-refeed1", "epoch_seconds_min_after_first"
            ),
        },
        "valid_rmse_fast_minus_reference_refeed0 (|.|<0.003)": runs["fast-fp32-refeed0"][
            "valid_rmse_last"
        ]
        - runs["reference-fp32-refeed0"]["valid_rmse_last"],
        "valid_rmse_fast_minus_reference_refeed1 (|.|<0.003)": runs["fast-fp32-refeed1"][
            "valid_rmse_last"
        ]
        - runs["reference-fp32-refeed1"]["valid_rmse_last"],
        "control_rmse_noise_floor_refeed0 (reference, other thread count)": runs[
            "control-reference-fp32-refeed0-other-threads"
        ]["valid_rmse_last"]
        - runs["reference-fp32-refeed0"]["valid_rmse_last"],
        "control_rmse_noise_floor_refeed1 (reference, other thread count)": runs[
            "control-reference-fp32-refeed1-other-threads"
        ]["valid_rmse_last"]
        - runs["reference-fp32-refeed1"]["valid_rmse_last"],
        "valid_rmse_bf16_minus_fp32_refeed1": runs["fast-bf16-refeed1"]["valid_rmse_last"]
        - runs["fast-fp32-refeed1"]["valid_rmse_last"],
        "valid_rmse_batch512_lr4x_minus_batch128_bf16": runs["fast-bf16-refeed0-batch512-lr4x"][
            "valid_rmse_last"
        ]
        - runs["fast-bf16-refeed0"]["valid_rmse_last"],
        "valid_rmse_bf16_minus_fp32_refeed0": runs["fast-bf16-refeed0"]["valid_rmse_last"]
        - runs["fast-fp32-refeed0"]["valid_rmse_last"],
        "batch_building_fraction_of_step (<0.05)": report["batch_building"]["fraction_of_step"],
    }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()

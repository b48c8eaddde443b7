"""Training throughput of 1 rank vs 2 data-parallel ranks (torchrun + DDP, gloo) on ML-1M.

Prepares the ML-1M subset (users 1-2999) once with a seeded 90/10 train/validation split,
then runs `torchrun --nproc_per_node=W -m deeprec train` for each (ranks, threads per rank)
setting and reads epoch times from the run's metrics.jsonl (epoch_seconds = the training loop
only; validation and checkpoint writing are excluded). The first epoch is warm-up and is
excluded from the median.

Run it under the shared lock (it saturates the CPU):

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/ddp_throughput.py \
        --out docs/results/ddp_throughput.md
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine

DEFAULT_RATINGS = Path("/work/shared/data/ml-1m-users1-2999/ratings.dat.gz")
SETTINGS = ((1, 1), (1, 2), (2, 1))  # (ranks, threads per rank)
MODEL = {
    "hidden": [256, 256],
    "dropout": 0.5,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 0.001,
    "refeed_steps": 1,
    "seed": 42,
}


def prepare(ratings: Path, out: Path) -> dict:
    import polars as pl

    from deeprec.data.dataset import PreparedDataset

    if (out / "meta.json").exists():
        dataset = PreparedDataset.load(out)
    else:
        raw = gzip.decompress(ratings.read_bytes()).replace(b"::", b",")
        frame = pl.read_csv(
            io.BytesIO(raw), has_header=False, new_columns=["user", "item", "rating", "timestamp"]
        ).with_columns(pl.col("rating").cast(pl.Float32))
        valid = np.random.default_rng(0).random(frame.height) < 0.1
        dataset = PreparedDataset.from_tables(
            frame.filter(pl.Series(~valid)), frame.filter(pl.Series(valid))
        )
        dataset.save(out)
    train = dataset.csr("train")
    return {
        "users": dataset.n_users,
        "items": dataset.n_items,
        "train_ratings": len(dataset.train),
        "valid_ratings": len(dataset.valid),
        "train_rows": int((train.row_lengths() > 0).sum()),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_setting(data: Path, work: Path, ranks: int, threads: int, epochs: int) -> dict:
    out = work / f"run-{ranks}r-{threads}t"
    sets = [
        f"{k}={json.dumps(v)}" for k, v in {**MODEL, "epochs": epochs, "threads": threads}.items()
    ]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "deeprec", "train", "--data", str(data), "--out", str(out), "--overwrite",
        "--quiet", "--device", "cpu",
    ]  # fmt: skip
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["epoch_seconds"] for r in records[1:]] or [records[0]["epoch_seconds"]]
    return {
        "ranks": ranks,
        "threads": threads,
        "epoch_seconds": statistics.median(times),
        "epoch_seconds_all": [round(r["epoch_seconds"], 3) for r in records],
        "valid_rmse": records[-1]["valid_rmse"],
        "wall_seconds": wall,
        "command": f"OMP_NUM_THREADS={threads} {shlex.join(cmd)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=DEFAULT_RATINGS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/deeprec-ddp-bench"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write a Markdown report here")
    args = parser.parse_args()

    data = args.work / "ml1m-subset"
    stats = prepare(args.ratings, data)
    conditions = machine()  # before the runs: its load average is the machine's before them
    results = [run_setting(data, args.work, r, t, args.epochs) for r, t in SETTINGS]
    base = results[0]["epoch_seconds"]
    lines = [
        "| ranks x threads | epoch s (median, epochs 2..) | users/s | ratings/s | speed-up vs 1x1 | "
        f"valid RMSE after {args.epochs} epochs | wall s (launch to exit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sec = r["epoch_seconds"]
        lines.append(
            f"| {r['ranks']} x {r['threads']} | {sec:.2f} | {stats['train_rows'] / sec:,.0f} | "
            f"{stats['train_ratings'] / sec:,.0f} | {base / sec:.2f} | {r['valid_rmse']:.4f} | "
            f"{r['wall_seconds']:.1f} |"
        )
    table = "\n".join(lines)
    detail = "\n".join(f"- {r['ranks']}x{r['threads']}: {r['epoch_seconds_all']}" for r in results)
    print(table)
    print(json.dumps({"data": stats, "conditions": conditions}, indent=2))
    if args.out:
        text = REPORT.format(
            stats=stats,
            model=json.dumps(MODEL),
            epochs=args.epochs,
            table=table,
            conditions=conditions,
            detail=detail,
            example=results[-1]["command"],
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


REPORT = """# Data-parallel throughput: 1 vs 2 ranks (torchrun + DDP, gloo, CPU)

Measured with `benchmarks/ddp_throughput.py` (command below). Data: ML-1M subset (users 1-2999,
`/work/shared/data/ml-1m-users1-2999/ratings.dat.gz`), seeded random 90/10 train/validation
split: {stats[users]} users, {stats[items]} items, {stats[train_ratings]:,} training ratings
({stats[train_rows]} training rows per epoch), {stats[valid_ratings]:,} validation ratings.
Model/training: {model}, {epochs} epochs, user-based, `compute` and `precision` at their
defaults; `batch_size` is the global batch (each of 2 ranks trains on 64 rows per step).

{table}

Per-epoch training-loop seconds (epoch 1 is warm-up, excluded from the median):
{detail}

Conditions: {conditions}. "ranks x threads": torchrun processes x `OMP_NUM_THREADS` (and
`threads`) per process. The 2-rank validation RMSE differs slightly from 1 rank because
dropout draws differ per rank (seed + rank); with dropout 0 they agree (see
tests/distributed/).

Command:

```
{example}
```
"""


if __name__ == "__main__":
    main()

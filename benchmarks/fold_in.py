"""Fold-in honesty numbers for docs/results/fold_in.md.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/fold_in.py \
        --out docs/results/fold_in.md

Hides 10% of the users from training, folds them in from 80% of their ratings through
`predict_for`, and compares RMSE on their other 20% with (a) users seen in training, scored
on a random 20% of their ratings, and (b) a bias-only baseline given the same ratings.
Runs on ML-100K (when /work/shared/data is there) and on a synthetic low-rank set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from _common import machine
from deeprec import DeepRec
from deeprec.recommend.honesty import fold_in_honesty, low_rank_ratings

DATA = Path(os.environ.get("DEEPREC_SHARED_DATA", "/work/shared/data"))

ML100K_PARAMS = dict(
    hidden=[256, 256], dropout=0.5, input_dropout=0.3, epochs=40, lr=0.001, batch_size=64
)
SYNTH_PARAMS = dict(hidden=[16], dropout=0.0, input_dropout=0.5, epochs=15, lr=0.003, batch_size=32)


def ml100k() -> pd.DataFrame:
    return pd.read_csv(
        DATA / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"]
    )


def synthetic() -> pd.DataFrame:
    return low_rank_ratings(
        2500, 80, rank=2, bias_scale=0.1, factor_scale=2.0, noise=0.2, density=0.3, seed=0
    )


def run(name: str, frame: pd.DataFrame, params: dict, seeds: list[int]) -> list[dict]:
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        report = fold_in_honesty(lambda seed=seed: DeepRec(**params, seed=seed), frame, seed=seed)
        report.update(dataset=name, seed=seed, seconds=round(time.perf_counter() - started, 1))
        print(json.dumps(report), file=sys.stderr)
        rows.append(report)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    if (DATA / "ml-100k" / "u.data").exists():
        results += run("ML-100K", ml100k(), ML100K_PARAMS, args.seeds)
    results += run("synthetic low-rank", synthetic(), SYNTH_PARAMS, args.seeds)
    if args.out:
        write(args, results)


def write(args: argparse.Namespace, results: list[dict]) -> None:
    lines = [
        "# Fold-in honesty: new users served without retraining",
        "",
        "```bash",
        "flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python "
        f"benchmarks/fold_in.py --seeds {' '.join(map(str, args.seeds))} --out {args.out}",
        "```",
        "",
        "Protocol (`deeprec.recommend.honesty.fold_in_honesty`): 10% of the users are hidden "
        "from training entirely. Every rating is held out with probability 0.2, for seen and "
        "hidden users alike. The model trains on the seen users' kept ratings. Hidden users "
        "are folded in through the public `predict_for` from their kept ratings (no "
        "retraining) and scored on their held-out ones; seen users are scored on theirs. "
        "**Bias-only** is mu + b_item (from training) + b_user (from the same ratings the "
        "fold-in sees), both shrunk with lambda = 10, so it gets exactly the model's "
        "information. Predictions are clipped to the rating scale. One row per split seed.",
        "",
        f"- ML-100K model: DeepRec {ML100K_PARAMS}",
        f"- synthetic model: DeepRec {SYNTH_PARAMS}; data `low_rank_ratings(2500, 80, rank=2, "
        "bias_scale=0.1, factor_scale=2.0, noise=0.2, density=0.3, seed=0)` (the same set "
        "the test `tests/serve/test_fold_in_honesty.py` uses)",
        f"- Machine: {machine()}; shared with other work (timings are indicative only).",
        "",
        "| data | seed | hidden users | hidden test ratings | RMSE seen users (model) | "
        "RMSE hidden users, fold-in | RMSE hidden users, bias-only | RMSE hidden, global mean "
        "| RMSE seen users, bias-only | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {r['n_users_hidden']} | {r['n_hidden_test']} | "
            f"{r['rmse_seen_model']:.4f} | **{r['rmse_hidden_foldin']:.4f}** | "
            f"{r['rmse_hidden_bias']:.4f} | {r['rmse_hidden_global_mean']:.4f} | "
            f"{r['rmse_seen_bias']:.4f} | {r['seconds']} |"
        )
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()

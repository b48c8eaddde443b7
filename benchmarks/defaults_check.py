"""Does `DeepRec()` with no settings work on typical ratings sets? Defaults vs bias-only.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/defaults_check.py \
        --out docs/results/defaults.md

Issue 3 asks that `deeprec train` without `--config` use defaults that work well on a
typical ratings set, validated on several real sets. For each split of benchmarks/realdata.py
(ML-100K u1, the ML-1M subset's time split, ml-latest-small's time split, FilmTrust random
80/10/10) this fits `DeepRec()` (TrainConfig defaults: user-based, centred on a bias
baseline) and `BiasOnly()` (its default regularisation) on the same training part, DeepRec
keeping its best-validation epoch, and scores both once on the test part (clipped RMSE).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import realdata  # noqa: E402
from deeprec import DeepRec  # noqa: E402
from deeprec.baselines import BiasOnly  # noqa: E402


def check(name: str) -> dict:
    dataset = realdata.LOADERS[name]()
    row: dict = {"split": realdata.SPLITS[name], "train": len(dataset.train)}
    row["test_n"] = len(dataset.test)
    for label, model in (("deeprec", DeepRec()), ("bias", BiasOnly())):
        started = time.perf_counter()
        model.fit(dataset)
        row[f"{label}_seconds"] = round(time.perf_counter() - started, 1)
        row[f"{label}_rmse"] = model.score(dataset.to_pandas("test"))["rmse"]
        if label == "deeprec":
            row["best_epoch"] = getattr(model, "best_epoch_", None)
    print(name, row, file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="ml100k,ml1m,mlls,filmtrust")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = dt.datetime.now(dt.UTC)
    rows = {name: check(name) for name in args.sets.split(",")}
    if args.out is None:
        return
    lines = [
        "# `DeepRec()` defaults on several real ratings sets, against bias-only",
        "",
        "Command (repository root):",
        "",
        "```bash",
        "flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/defaults_check.py "
        f"--sets {args.sets} --threads {args.threads} --out {args.out}",
        "```",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on a {os.cpu_count()}-core "
        f"{platform.machine()} CPU (AMD EPYC Zen 4, no AMX), torch {torch.__version__}, "
        f"{args.threads} threads; single-threaded tuning trials of another session ran "
        "between locked jobs. `DeepRec()` = TrainConfig defaults (user-based 256,256 SELU, "
        "dropout 0.5, Adam lr 0.001, weight decay 0.01 on weights, 50 epochs, "
        "`center: bias`), best-validation epoch kept; `BiasOnly()` = mu + b_u + b_i with its "
        "default regularisation. Test RMSE on predictions clipped to the rating scale.",
        "",
        "| split | train ratings | test ratings | DeepRec() test RMSE | best epoch | fit s "
        "| BiasOnly() test RMSE | DeepRec - BiasOnly |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        lines.append(
            f"| {row['split']} | {row['train']:,} | {row['test_n']:,} | "
            f"{row['deeprec_rmse']:.4f} | {row['best_epoch']} | {row['deeprec_seconds']} | "
            f"{row['bias_rmse']:.4f} | {row['deeprec_rmse'] - row['bias_rmse']:+.4f} |"
        )
    lines.append("")
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()

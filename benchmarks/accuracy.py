"""Accuracy of the tuned DeepRec presets vs Surprise on the same splits, in one run.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/accuracy.py

For ML-100K u1 and the ML-1M subset's time split (see benchmarks/realdata.py) this trains
configs/ml-100k.yaml and configs/ml-1m.yaml (best epoch chosen by validation RMSE, then
scored once on test) and Surprise's BaselineOnly, SVD and SVD++ with their default
hyper-parameters, and writes docs/results/accuracy.md and accuracy.csv. Every method is
scored on the same test ratings with predictions clipped to the rating scale (the headline)
and unclipped.

Surprise is fit on everything the split lets a model train on: for u1 that is all of u1.base
(train + the 5% validation DeepRec holds out for model selection, as in published u1
numbers); for the time split it is the training window only (the validation half of the
test window is never trained on by any method).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import realdata  # noqa: E402
from _common import machine  # noqa: E402
from deeprec.estimator import DeepRec  # noqa: E402
from deeprec.train.config import TrainConfig  # noqa: E402

DEEPREC_CONFIGS = {"ml100k": ["configs/ml-100k.yaml"], "ml1m": ["configs/ml-1m.yaml"]}


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def run_deeprec(dataset, config_path: str) -> dict:
    config = TrainConfig.from_yaml(ROOT / config_path)
    started = time.perf_counter()
    model = DeepRec.from_config(config).fit(dataset)
    seconds = time.perf_counter() - started
    score = model.score(dataset, "test")
    epochs = len(model.history_)
    return {
        "method": "DeepRec",
        "config": f"{config_path}: {model.module.architecture()}",
        "epochs": f"{epochs} (best {model.best_epoch_})",
        "sec_per_epoch": np.mean([r.epoch_seconds + r.eval_seconds for r in model.history_]),
        "total_seconds": seconds,
        "valid_rmse": model.best_valid_rmse_,
        "test_rmse": score["rmse"],
        "test_rmse_unclipped": score["rmse_unclipped"],
        "n_test": score["n"],
    }


def run_surprise(dataset, name: str, use_valid: bool) -> dict:
    import pandas as pd
    from surprise import SVD, BaselineOnly, Dataset, Reader, SVDpp

    algo = {"BaselineOnly": BaselineOnly, "SVD": SVD, "SVD++": SVDpp}[name]
    kwargs = {"verbose": False} if name == "BaselineOnly" else {"random_state": 0}
    frames = [dataset.to_pandas("train")] + ([dataset.to_pandas("valid")] if use_valid else [])
    train = pd.concat(frames)[["user", "item", "rating"]]
    low, high = dataset.rating_range
    data = Dataset.load_from_df(train, Reader(rating_scale=(low, high)))
    started = time.perf_counter()
    model = algo(**kwargs)
    model.fit(data.build_full_trainset())
    seconds = time.perf_counter() - started
    test = dataset.to_pandas("test")
    raw = np.array(
        [
            model.predict(u, i, clip=False).est
            for u, i in zip(test["user"].tolist(), test["item"].tolist(), strict=True)
        ]
    )
    truth = test["rating"].to_numpy(np.float64)
    epochs = getattr(model, "n_epochs", 10)
    return {
        "method": f"Surprise {name}",
        "config": "defaults" + (" (fit on train+valid)" if use_valid else " (fit on train)"),
        "epochs": str(epochs),
        "sec_per_epoch": seconds / epochs,
        "total_seconds": seconds,
        "valid_rmse": None,
        "test_rmse": _rmse(np.clip(raw, low, high), truth),
        "test_rmse_unclipped": _rmse(raw, truth),
        "n_test": len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml100k", "ml1m"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["deeprec", "surprise"],
        help="Which to run; rows of the others already in accuracy.csv are kept.",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for key in args.datasets:
        dataset = realdata.LOADERS[key]()
        split = realdata.SPLITS[key]
        if "deeprec" in args.methods:
            for config_path in DEEPREC_CONFIGS.get(key, []):
                rows.append({"split": split, **run_deeprec(dataset, config_path)})
                rows[-1]["measured"] = _now()
                print(rows[-1], flush=True)
                write(rows, args.out, args)
        if "surprise" in args.methods:
            for name in ("BaselineOnly", "SVD", "SVD++"):
                rows.append({"split": split, **run_surprise(dataset, name, key == "ml100k")})
                rows[-1]["measured"] = _now()
                print(rows[-1], flush=True)
                write(rows, args.out, args)


def _now() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _merge(rows: list[dict], path: Path) -> list[dict]:
    """Rows of this run replace earlier rows of the same split and method; others stay."""
    if not path.is_file():
        return rows
    with open(path, newline="") as handle:
        old = list(csv.DictReader(handle))
    fresh = {(r["split"], r["method"]) for r in rows}
    kept = []
    for r in old:
        if (r["split"], r["method"]) in fresh:
            continue
        for key in ("sec_per_epoch", "total_seconds", "test_rmse", "test_rmse_unclipped"):
            r[key] = float(r[key])
        r["valid_rmse"] = float(r["valid_rmse"]) if r["valid_rmse"] else None
        r["n_test"] = int(r["n_test"])
        kept.append(r)
    order = {k: i for i, k in enumerate(realdata.SPLITS.values())}
    return sorted(kept + rows, key=lambda r: (order.get(r["split"], 99), r["method"] != "DeepRec"))


def write(rows: list[dict], out: Path, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = _merge(rows, out / "accuracy.csv")
    fields = list(rows[0])
    with open(out / "accuracy.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Accuracy: DeepRec presets vs Surprise on the same splits",
        "",
        f"Machine: {machine()}; shared with other work while measured.",
        "",
        "Command: `flock /tmp/deeprec-heavy.lock env PYTHONPATH=src "
        "python benchmarks/accuracy.py` (rows may come from separate runs of "
        "it with `--methods deeprec` or `--methods surprise`; each row says when).",
        "",
        "Headline: test RMSE with predictions clipped to the rating scale. DeepRec's epoch is",
        "the best by validation RMSE (validation never overlaps test); test is scored once.",
        "Seconds per epoch include the per-epoch validation pass.",
        "",
        "| split | method | config | epochs | s/epoch | valid RMSE | test RMSE (clipped) "
        "| test RMSE (unclipped) | test n | measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        valid = "-" if r["valid_rmse"] is None else f"{r['valid_rmse']:.4f}"
        lines.append(
            f"| {r['split']} | {r['method']} | {r['config']} | {r['epochs']} | "
            f"{r['sec_per_epoch']:.2f} | {valid} | **{r['test_rmse']:.4f}** | "
            f"{r['test_rmse_unclipped']:.4f} | {r['n_test']:,} | {r['measured']} |"
        )
    lines += ["", (realdata.__doc__ or "").strip(), ""]
    (out / "accuracy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

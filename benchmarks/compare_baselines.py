"""DeepRec vs baselines vs scikit-surprise on ML-100K u1 and 5 seeded 90/10 random splits.

Every model goes through deeprec.experiments.protocols.run_protocol on the same folds: ours
fit on (train, valid) where valid is a seeded 5% of the training part (used for early stopping
and best-epoch selection, never test); Surprise cannot use a validation set and fits on
train + valid. RMSE is on predictions clipped to the rating scale.

DeepRec (issue 5's comparison) runs in the same loop on the same folds: the shipped
``ml-100k`` preset (item-based), the user-based TrainConfig defaults (``DeepRec()``, centred:
``center: bias``) and the ``ml-100k-ensemble`` preset (deeprec.ensemble: several DeepRec
members, blend weights fitted on each fold's validation part), all unchanged except for an
optional epoch cap (``--deeprec-max-epochs``); none was tuned on any test part. ``--no-deeprec`` leaves them out (the baselines-only report).

To add another model, append a (name, factory) pair to the list returned by
``default_models()`` or pass ``models=`` to ``main``::

    from compare_baselines import default_models, main
    main(models=default_models() + [("DeepRec (ours)", lambda: DeepRec(**cfg))])

Run (heavy: under the shared lock):

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/compare_baselines.py \
        --data ../shared/data/ml-100k --out docs/results/comparison.md \
        --tuned docs/results/baselines_tuning.csv --deeprec-max-epochs 200

(``--no-deeprec --out docs/results/baselines.md`` for the baselines-only report, after
tune_baselines.py; each report names its command.) On the shared 2-core box the whole run takes about 5-10 minutes.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from _common import SurpriseModel, machine, markdown_table
from deeprec.atomic import atomic_file
from deeprec.baselines import AutoRec, BiasedMF, BiasOnly
from deeprec.ensemble import Ensemble, load_ensemble_preset, member_groups
from deeprec.estimator import DeepRec
from deeprec.experiments.protocols import (
    Fold,
    movielens_100k_folds,
    random_splits,
    read_tab_ratings,
    run_protocol,
)
from deeprec.presets import load_preset
from deeprec.train.config import TrainConfig

# Fallback hyper-parameters; with --tuned CSV (from tune_baselines.py) the configuration
# with the best u1 *validation* RMSE per model replaces these. Reused on the random splits.
TUNED: dict[str, dict[str, Any]] = {
    "BiasOnly": {"reg_user": 15.0, "reg_item": 10.0},
    "BiasedMF": {"n_factors": 100, "lr": 0.01, "reg": 0.05, "epochs": 100, "patience": 5},
    "I-AutoRec": {
        "hidden": 500,
        "l2": 200.0,
        "lr": 0.01,
        "epochs": 400,
        "patience": 25,
        "eval_every": 2,
    },
    "U-AutoRec": {
        "orientation": "user",
        "hidden": 500,
        "l2": 100.0,
        "lr": 0.01,
        "epochs": 400,
        "patience": 25,
        "eval_every": 2,
    },
}

# Published results, NOT measured here: each names its dataset and protocol.
PUBLISHED = [
    (
        "I-AutoRec",
        "0.831",
        "ML-1M, random 90/10, 5 repeats",
        "Sedhain et al. 2015 (AutoRec), Table 1",
    ),
    (
        "U-AutoRec",
        "0.874",
        "ML-1M, random 90/10, 5 repeats",
        "Sedhain et al. 2015 (AutoRec), Table 1",
    ),
    ("GC-MC", "0.910", "ML-100K, official u1.base/u1.test", "Berg et al. 2017 (GC-MC)"),
    ("GC-MC + side features", "0.905", "ML-100K, official u1", "Berg et al. 2017 (GC-MC)"),
    ("GLocal-K", "0.8889", "ML-100K, official u1 (GC-MC split)", "Han et al. 2021 (GLocal-K)"),
    (
        "DeepRec n,512,512,1024,512,512,n (dp 0.8)",
        "0.9099",
        "Netflix Prize full, time split",
        "Kuchaiev & Ginsburg 2017, Table 3",
    ),
    (
        "DeepRec n,128,256,256,256,128,n (dp 0.65)",
        "0.9373",
        "Netflix 3 months, time split",
        "Kuchaiev & Ginsburg 2017, Table 3",
    ),
]


class GlobalMean:
    """The trivial reference: predict the training mean for everything."""

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> GlobalMean:
        self.mean_ = float(np.mean(train["rating"].to_numpy(np.float64)))
        return self

    def score(self, test: pd.DataFrame) -> dict[str, float | int]:
        truth = test["rating"].to_numpy(np.float64)
        return {
            "rmse": float(np.sqrt(np.mean((truth - self.mean_) ** 2))),
            "mae": float(np.mean(np.abs(truth - self.mean_))),
            "n": int(truth.shape[0]),
        }


def load_tuned(path: Path) -> None:
    """Replace TUNED entries by the best-validation configuration in a tuning CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name in TUNED:
        mine = [r for r in rows if r["model"] == name]
        if mine:
            best = min(mine, key=lambda r: float(r["valid_rmse"]))
            TUNED[name] = json.loads(best["params"])
            print(f"{name}: {TUNED[name]} (valid {best['valid_rmse']})", file=sys.stderr)


def deeprec_configs(max_epochs: int | None) -> dict[str, dict[str, Any]]:
    """DeepRec's two configurations as DeepRec(**kwargs); epochs capped at `max_epochs`."""
    configs = {
        "DeepRec item-based (ml-100k preset)": load_preset("ml-100k").to_dict(),
        "DeepRec user-based (TrainConfig defaults)": TrainConfig().to_dict(),
    }
    for config in configs.values():
        if max_epochs is not None:
            config["epochs"] = min(int(config["epochs"]), max_epochs)
    return configs


def _shown(config: dict[str, Any]) -> dict[str, Any]:
    """The keys that change the model (not checkpointing, device or evaluation batching)."""
    hidden = {"compute", "precision", "device", "eval_batch_size", "threads", "momentum"}
    if config.get("lr_schedule") == "none":
        hidden |= {"lr_milestones", "lr_gamma"}
    return {k: v for k, v in config.items() if k not in hidden and not k.startswith("checkp")}


ENSEMBLE_PRESET = "ml-100k-ensemble"
ENSEMBLE_NAME = f"DeepRec ensemble ({ENSEMBLE_PRESET} preset)"


def ensemble_kwargs(max_epochs: int | None) -> dict[str, Any]:
    """The ensemble preset with every member's epochs capped at `max_epochs`."""
    kwargs = load_ensemble_preset(ENSEMBLE_PRESET)
    if max_epochs is not None:
        kwargs["members"] = [  # keep each entry (its seeds form one blend group)
            {**spec, "epochs": min(group[0].epochs, max_epochs)}
            for spec, group in zip(kwargs["members"], member_groups(kwargs["members"]), strict=True)
        ]
    return kwargs


def deeprec_models(max_epochs: int | None) -> list[tuple[str, Callable[[], Any]]]:
    models = [
        (name, lambda config=config: DeepRec(**config))
        for name, config in deeprec_configs(max_epochs).items()
    ]
    kwargs = ensemble_kwargs(max_epochs)
    return [*models, (ENSEMBLE_NAME, lambda: Ensemble(**kwargs))]


def default_models() -> list[tuple[str, Callable[[], Any]]]:
    from surprise import SVD, BaselineOnly, SVDpp

    return [
        ("Global mean", GlobalMean),
        ("BiasOnly (ours)", lambda: BiasOnly(**TUNED["BiasOnly"])),
        ("BiasedMF (ours)", lambda: BiasedMF(**TUNED["BiasedMF"])),
        ("I-AutoRec (ours)", lambda: AutoRec(**TUNED["I-AutoRec"])),
        ("U-AutoRec (ours)", lambda: AutoRec(**TUNED["U-AutoRec"])),
        (
            "Surprise BaselineOnly (defaults, ALS)",
            lambda: SurpriseModel("BaselineOnly", lambda: BaselineOnly(verbose=False)),
        ),
        ("Surprise SVD (defaults)", lambda: SurpriseModel("SVD", lambda: SVD(random_state=0))),
        (
            "Surprise SVD++ (defaults)",
            lambda: SurpriseModel("SVD++", lambda: SVDpp(random_state=0, cache_ratings=True)),
        ),
    ]


def protocols(data: Path, seeds: list[int]) -> dict[str, Callable[[], Iterator[Fold]]]:
    return {
        "ML-100K u1 (official u1.base/u1.test)": lambda: movielens_100k_folds(
            data, folds=[1], valid_fraction=0.05, seed=0
        ),
        f"ML-100K random 90/10, seeds {seeds[0]}..{seeds[-1]}": lambda: random_splits(
            read_tab_ratings(data / "u.data"),
            seeds=seeds,
            test_fraction=0.1,
            valid_fraction=0.05,
            name="ml-100k",
        ),
    }


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f}" if n < 2 else f"{mean:.4f} ± {std:.4f}"


def write_report(out: Path, summary: list[dict], per_fold: list[dict], header: str) -> None:
    columns = [
        "protocol",
        "model",
        "RMSE",
        "MAE",
        "folds",
        "fit s (mean)",
        "best epochs",
        "per-fold RMSE",
    ]
    parts = [header, "## Measured", ""]
    for protocol in dict.fromkeys(row["protocol"] for row in summary):
        rows = [r for r in summary if r["protocol"] == protocol]
        parts += [f"### {protocol}", "", markdown_table(rows, columns[1:]), ""]
    published = [
        {"model": m, "RMSE": r, "dataset / protocol": d, "source": s} for m, r, d, s in PUBLISHED
    ]
    parts += [
        "## Published, not measured",
        "",
        "Numbers from the papers, on the datasets and protocols named; NOT run here. Only",
        "the ML-100K u1 rows are on the same data as our u1 table.",
        "",
        markdown_table(published, ["model", "RMSE", "dataset / protocol", "source"]),
        "",
    ]
    with atomic_file(out, "w") as handle:
        handle.write("\n".join(parts))
    fields = sorted({k for row in per_fold for k in row}, key=lambda k: (k != "protocol", k))
    with atomic_file(out.with_suffix(".csv"), "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(per_fold)


def main(argv: list[str] | None = None, models: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/baselines.md"))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="*", default=None, help="model name substrings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tuned", type=Path, default=None, help="CSV from tune_baselines.py")
    parser.add_argument("--no-deeprec", action="store_true", help="baselines only")
    parser.add_argument(
        "--deeprec-max-epochs", type=int, default=None, help="cap DeepRec's epochs (time)"
    )
    args = parser.parse_args(argv)
    if args.tuned is not None:
        load_tuned(args.tuned)
    torch.set_num_threads(args.threads)
    with_deeprec = models is None and not args.no_deeprec
    if models is None:
        models = (deeprec_models(args.deeprec_max_epochs) if with_deeprec else []) + (
            default_models()
        )
    if args.only:
        models = [(n, f) for n, f in models if any(s.lower() in n.lower() for s in args.only)]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = "\n".join(
        [
            "# DeepRec vs baselines on MovieLens-100K"
            if with_deeprec
            else "# Baselines on MovieLens-100K",
            "",
            f"Command: `python benchmarks/compare_baselines.py {' '.join(sys.argv[1:])}` "
            "(under `flock /tmp/deeprec-heavy.lock`, `PYTHONPATH=src`)",
            "",
            f"Started {started}. Machine: {machine()}. Fit times are wall-clock under",
            "that shared load, so compare them only loosely.",
            "",
            "Protocol: validation = a seeded 5% of each training part (our models use it for",
            "early stopping / best epoch; Surprise, which cannot, trains on train + valid).",
            "RMSE/MAE on test predictions clipped to the rating scale, mean ± sample std over",
            "folds. Our hyper-parameters were tuned on u1's validation part only",
            "(docs/results/baselines_tuning.md) and reused unchanged on the random splits:",
            "",
            *[
                f"- {name}: `{json.dumps(params, sort_keys=True)}`"
                for name, params in TUNED.items()
            ],
            "",
            *(
                [
                    "DeepRec configurations (not tuned here; chosen earlier on u1's validation"
                    " part, docs/results/model-tuning.md; best-validation epoch kept):",
                    "",
                    *[
                        f"- {name}: `{json.dumps(_shown(params), sort_keys=True)}`"
                        for name, params in deeprec_configs(args.deeprec_max_epochs).items()
                    ],
                    f"- {ENSEMBLE_NAME}: members and blend as in"
                    f" src/deeprec/presets/{ENSEMBLE_PRESET}.yaml (blend weights fitted by"
                    " least squares on each fold's validation part)",
                    "",
                ]
                if with_deeprec
                else []
            ),
        ]
    )
    summary: list[dict] = []
    per_fold: list[dict] = []
    for protocol, make_folds in protocols(args.data, args.seeds).items():
        folds = list(make_folds())
        for name, factory in models:
            print(f"[{protocol}] {name} ...", file=sys.stderr, flush=True)
            result = run_protocol(
                factory,
                folds,
                name=name,
                on_fold=lambda row: print(f"    {row}", file=sys.stderr, flush=True),
            )
            n = len(result.folds)
            summary.append(
                {
                    "protocol": protocol,
                    "model": name,
                    "RMSE": _fmt(result.mean["rmse"], result.std["rmse"], n),
                    "MAE": _fmt(result.mean["mae"], result.std["mae"], n),
                    "folds": n,
                    "fit s (mean)": f"{result.mean['fit_seconds']:.1f}",
                    "best epochs": " ".join(str(r.get("best_epoch", "")) for r in result.folds),
                    "per-fold RMSE": " ".join(f"{r['rmse']:.4f}" for r in result.folds),
                }
            )
            per_fold += [{"protocol": protocol, **row} for row in result.to_rows()]
            write_report(args.out, summary, per_fold, header)  # partial results survive
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Table 3 on one split: DeepRec against the global mean and the baselines.

Baselines are imported lazily by module path, so the recipe still runs (and says so in its
table) where a baseline module is not installed. Every model sees the same prepared dataset;
valid is used only for model selection (best epoch / early stopping), test only for scoring.
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from typing import Any

import numpy as np
import yaml

from deeprec.experiments.common import RecipeOutput, Settings
from deeprec.experiments.report import markdown_table, plot_series, write_csv, write_text
from deeprec.train.config import TrainConfig

TITLE = "Table 3 — DeepRec against the baselines on the same split"

# label, module, class, keyword arguments (defaults otherwise: each baseline's own)
BASELINES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("BiasOnly", "deeprec.baselines.bias", "BiasOnly", {}),
    ("BiasedMF", "deeprec.baselines.mf", "BiasedMF", {}),
    ("I-AutoRec", "deeprec.baselines.autorec", "AutoRec", {"orientation": "item"}),
    ("U-AutoRec", "deeprec.baselines.autorec", "AutoRec", {"orientation": "user"}),
)

COLUMNS = (
    "model",
    "params",
    "valid_rmse",
    "test_rmse",
    "test_mae",
    "test_rmse_unclipped",
    "seconds",
    "seed",
    "status",
)


def _global_mean_row(settings: Settings) -> dict[str, Any]:
    ds = settings.dataset
    mean = float(ds.train.ratings.mean())
    row: dict[str, Any] = {
        "model": "global mean",
        "params": "",
        "seed": "",
        "status": "ok",
        "seconds": 0.0,
    }
    for split in ("valid", "test"):
        part = ds.split(split)
        if len(part):
            row[f"{split}_rmse"] = math.sqrt(
                float(np.mean((part.ratings.astype(np.float64) - mean) ** 2))
            )
    if len(ds.test):
        row["test_mae"] = float(np.mean(np.abs(ds.test.ratings - mean)))
        row["test_rmse_unclipped"] = row["test_rmse"]
    return row


def _score_row(
    label: str, model: Any, settings: Settings, seconds: float, params: str
) -> dict[str, Any]:
    ds = settings.dataset
    row: dict[str, Any] = {
        "model": label,
        "params": params,
        "seconds": round(seconds, 2),
        "seed": getattr(model, "seed", ""),
        "status": "ok",
    }
    if len(ds.valid):  # a refitted model trained on valid: its fit's own number is honest
        refitted = getattr(model, "refit_", None)
        row["valid_rmse"] = model.best_valid_rmse_ if refitted else model.score(ds, "valid")["rmse"]
    if len(ds.test):
        test = model.score(ds, "test")
        row["test_rmse"] = test["rmse"]
        row["test_mae"] = test["mae"]
        row["test_rmse_unclipped"] = test["rmse_unclipped"]
    return row


def deeprec_config(settings: Settings, epochs: int) -> TrainConfig:
    """Project defaults, then --config, then --set, then --epochs/--seed."""
    defaults = {k: v for k, v in TrainConfig().to_dict().items() if k != "epochs"}
    return settings.base_config(**defaults, epochs=epochs)


def run_comparison(settings: Settings, epochs: int) -> RecipeOutput:
    from deeprec.estimator import DeepRec

    out = settings.out
    rows = [_global_mean_row(settings)]
    config = deeprec_config(settings, epochs)
    histories = []
    for orientation in ("user", "item"):
        oriented = TrainConfig.from_dict({**config.to_dict(), "orientation": orientation})
        started = time.perf_counter()
        if settings.progress:
            print(f"[DeepRec {orientation}-based] training {oriented.epochs} epochs", flush=True)
        model = DeepRec.from_config(oriented).fit(settings.dataset)
        rows.append(
            _score_row(
                f"DeepRec ({orientation}-based)",
                model,
                settings,
                time.perf_counter() - started,
                f"{model.module.architecture()}, {oriented.activation}, {oriented.optimizer} "
                f"lr {oriented.lr:g}, {oriented.epochs} epochs (best {model.best_epoch_})",
            )
        )
        histories.append(
            (
                f"DeepRec {orientation}-based",
                [r.epoch for r in model.history_ if r.valid_rmse is not None],
                [r.valid_rmse for r in model.history_ if r.valid_rmse is not None],
                {},
            )
        )
    for label, module_name, class_name, kwargs in BASELINES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            rows.append({"model": label, "status": f"not available ({exc.__class__.__name__})"})
            continue
        params = dict(kwargs)
        accepted = inspect.signature(cls.__init__).parameters
        if "seed" in accepted:
            params["seed"] = settings.seed
        if settings.baseline_epochs is not None and "epochs" in accepted:
            default = accepted["epochs"].default
            cap = settings.baseline_epochs
            params["epochs"] = min(cap, default) if isinstance(default, int) else cap
        if settings.progress:
            print(f"[{label}] fitting {cls.__name__}({params})", flush=True)
        started = time.perf_counter()
        baseline = cls(**params).fit(settings.dataset)
        shown = ", ".join(f"{k}={v}" for k, v in baseline.get_params().items() if k != "verbose")
        rows.append(_score_row(label, baseline, settings, time.perf_counter() - started, shown))
    files = [write_csv(out / "runs.csv", rows, COLUMNS)]
    files.append(
        write_text(
            out / "configs.yaml", yaml.safe_dump({"DeepRec": config.to_dict()}, sort_keys=False)
        )
    )
    plots = [
        plot_series(
            out / "comparison_deeprec_valid.png",
            histories,
            xlabel="epoch",
            ylabel="evaluation RMSE",
            title="DeepRec evaluation RMSE (comparison run)",
        )
    ]
    ds = settings.dataset
    table = markdown_table(
        rows,
        [
            ("model", "model"),
            ("valid_rmse", "valid RMSE"),
            ("test_rmse", "test RMSE"),
            ("test_mae", "test MAE"),
            ("seconds", "fit seconds"),
            ("status", "status"),
        ],
    )
    params = "\n".join(f"- {r['model']}: {r.get('params') or 'n/a'}" for r in rows)
    text = "\n".join(
        [
            f"# {TITLE}",
            "",
            f"- data: `{settings.data_path}` — {ds.n_users} users, {ds.n_items} items, "
            f"train/valid/test ratings {len(ds.train)}/{len(ds.valid)}/{len(ds.test)}",
            f"- user subsample: {settings.subsample:g}; seed {settings.seed}",
            "- RMSE of predictions clipped to the rating scale; DeepRec is scored at its "
            "best-by-validation epoch; baselines use their own defaults"
            + (
                f" with epochs capped at {settings.baseline_epochs} (--baseline-epochs)"
                if settings.baseline_epochs is not None
                else ""
            ),
            "",
            table,
            "Settings:",
            "",
            params,
            "",
            "Files: " + ", ".join(f"`{p.name}`" for p in [*files, *plots, out / "results.md"]),
            "",
        ]
    )
    files.append(write_text(out / "results.md", text))
    return RecipeOutput(name="comparison", out=out, rows=rows, files=[*files, *plots])

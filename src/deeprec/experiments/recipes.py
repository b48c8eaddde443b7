"""The paper's experiments (Kuchaiev & Ginsburg 2017, section 3) as runnable recipes.

Each recipe trains a family of configurations on one prepared dataset and writes, into its
output folder: ``results.md`` (table, data, seeds, epochs), ``runs.csv`` (one row per
configuration), ``epochs.csv`` (per-epoch curves), ``batches.csv`` where the paper shows
per-mini-batch curves, ``configs.yaml`` (every configuration in full) and PNG plots.

Unless a recipe varies them, configurations follow the paper's procedure: SGD with momentum
0.9, lr 0.001, batch 128, SELU, linear output layer, user-based, no dropout, no re-feeding,
raw (uncentred) ratings as the paper fed them. `--config`/`--set` change that base (e.g.
``--set center=bias``); the recipe's varied keys always win. Every configuration trains
through `DeepRec.fit`, as `deeprec train` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deeprec.errors import ConfigError
from deeprec.experiments.common import (
    RecipeOutput,
    Settings,
    TracedRun,
    train_traced,
    variant,
)
from deeprec.experiments.comparison import TITLE as COMPARISON_TITLE
from deeprec.experiments.comparison import run_comparison
from deeprec.experiments.report import (
    markdown_table,
    plot_series,
    robust_ylim,
    write_csv,
    write_text,
)
from deeprec.train.config import TrainConfig

PAPER_PROCEDURE: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.001,
    "momentum": 0.9,
    "batch_size": 128,
    "activation": "selu",
    "last_activation": "identity",
    "dropout": 0.0,
    "dropout_placement": "code",
    "constrained": False,
    "orientation": "user",
    "refeed_steps": 0,
    "weight_decay": 0.0,
    "lr_schedule": "none",
    "early_stopping": 0,
    "center": "none",  # the paper fed raw ratings; `--set center=bias` centres
    "standardize": False,  # ... on their own scale
}

ACTIVATIONS = ("sigmoid", "relu", "relu6", "tanh", "elu", "lrelu", "selu", "swish", "identity")
DEPTHS = (2, 4, 6, 8, 10, 12)
WIDTHS = (128, 256, 512, 1024)
DROPOUTS = (0.0, 0.5, 0.65, 0.8)
WIDE_HIDDEN = [512, 512, 1024]  # n,512,512,1024,512,512,n

RUN_COLUMNS = (
    "label",
    "architecture",
    "n_params",
    "activation",
    "constrained",
    "dropout",
    "optimizer",
    "lr",
    "refeed_steps",
    "epochs",
    "seed",
    "best_epoch",
    "best_valid_rmse",
    "final_train_rmse",
    "final_valid_rmse",
    "test_rmse",
    "seconds",
    "diverged",
)
EPOCH_COLUMNS = ("label", "epoch", "train_rmse", "valid_rmse", "valid_mae", "lr", "epoch_seconds")


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    default_epochs: int
    run: Callable[[Settings, int], RecipeOutput]


# ------------------------------------------------------------------ shared plumbing
def _run_row(run: TracedRun) -> dict[str, Any]:
    c = run.config
    last = run.history[-1] if run.history else None
    return {
        "label": run.label,
        "architecture": run.architecture,
        "n_params": run.n_params,
        "activation": c.activation,
        "constrained": c.constrained,
        "dropout": c.dropout,
        "optimizer": c.optimizer,
        "lr": c.lr,
        "refeed_steps": c.refeed_steps,
        "epochs": len(run.history),
        "seed": c.seed,
        "best_epoch": run.best_epoch,
        "best_valid_rmse": run.best_valid_rmse,
        "final_train_rmse": last.train_rmse if last else None,
        "final_valid_rmse": last.valid_rmse if last else None,
        "test_rmse": run.test_rmse,
        "seconds": round(run.seconds, 2),
        "diverged": run.diverged,
    }


def _train_all(
    settings: Settings, configs: list[tuple[str, TrainConfig]], *, record_batches: bool = False
) -> list[TracedRun]:
    runs = []
    for label, config in configs:
        if settings.progress:
            print(f"[{label}] training {config.epochs} epochs", flush=True)
        run = train_traced(
            settings.dataset,
            config,
            label,
            record_batches=record_batches,
        )
        if settings.progress:
            print(
                f"[{label}] best valid {run.best_valid_rmse} at epoch {run.best_epoch}, "
                f"test {run.test_rmse}, {run.seconds:.1f}s"
                + (f"  DIVERGED: {run.diverged}" if run.diverged else ""),
                flush=True,
            )
        runs.append(run)
    return runs


def _write_common(
    settings: Settings,
    name: str,
    title: str,
    runs: list[TracedRun],
    table_columns: list[tuple[str, str]],
    notes: str,
    plots: list[Path],
) -> RecipeOutput:
    out = settings.out
    rows = [_run_row(r) for r in runs]
    files = [write_csv(out / "runs.csv", rows, RUN_COLUMNS)]
    epoch_rows = [{"label": r.label, **rec.to_dict()} for r in runs for rec in r.history]
    files.append(write_csv(out / "epochs.csv", epoch_rows, EPOCH_COLUMNS))
    if any(r.batch_rmse for r in runs):
        batch_rows = [
            {"label": r.label, "step": k + 1, "epoch": e, "batch": b + 1, "train_rmse": v}
            for r in runs
            for k, (e, b, v) in enumerate(r.batch_rmse)
        ]
        files.append(
            write_csv(
                out / "batches.csv", batch_rows, ("label", "step", "epoch", "batch", "train_rmse")
            )
        )
    configs = {r.label: r.config.to_dict() for r in runs}
    files.append(write_text(out / "configs.yaml", yaml.safe_dump(configs, sort_keys=False)))
    meta = settings.dataset.meta
    seeds = sorted({r.config.seed for r in runs})
    epochs = sorted({r.config.epochs for r in runs})
    lines = [
        f"# {title}",
        "",
        f"- data: `{settings.data_path}` — {settings.dataset.n_users} users, "
        f"{settings.dataset.n_items} items, train/valid/test ratings "
        f"{len(settings.dataset.train)}/{len(settings.dataset.valid)}/{len(settings.dataset.test)}"
        + (f" (split: {meta['split']})" if "split" in meta else ""),
        f"- user subsample: {settings.subsample:g} (seed {settings.seed})",
        f"- epochs: {', '.join(map(str, epochs))}; seeds: {', '.join(map(str, seeds))}",
        "- evaluation RMSE = validation RMSE (predictions clipped to the rating scale); "
        "test RMSE is the best-by-validation epoch's",
        "- training RMSE = RMSE of the mini-batches' sparse pass during the epoch "
        "(dropout on, weights changing)",
        "",
        markdown_table(rows, table_columns),
        notes,
        "",
        "Files: " + ", ".join(f"`{p.name}`" for p in [*files, *plots]),
        "",
    ]
    files.append(write_text(out / "results.md", "\n".join(lines)))
    return RecipeOutput(name=name, out=out, rows=rows, files=[*files, *plots])


def _epoch_series(
    runs: list[TracedRun], key: str, styles: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, list[float], list[float], dict[str, Any]]]:
    series = []
    for run in runs:
        points = [(r.epoch, getattr(r, key)) for r in run.history if getattr(r, key) is not None]
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        series.append((run.label, xs, ys, (styles or {}).get(run.label, {})))
    return series


def _plot_epochs(
    path: Path, runs: list[TracedRun], key: str, title: str, styles: dict | None = None
) -> Path:
    series = _epoch_series(runs, key, styles)
    ylabel = {"train_rmse": "training RMSE", "valid_rmse": "evaluation RMSE"}[key]
    values = [y for s in series for y in s[2]]
    return plot_series(
        path,
        series,
        xlabel="epoch",
        ylabel=ylabel,
        title=title,
        ylim=robust_ylim(values, quantile=1.0),
    )


# --------------------------------------------------------------------------- recipes
def activations(settings: Settings, epochs: int) -> RecipeOutput:
    """Figure 2: training RMSE per mini-batch of a 4-layer 128-unit autoencoder per activation."""
    base = settings.base_config(**PAPER_PROCEDURE, hidden=[128, 128], epochs=epochs)
    configs = [(act, variant(base, activation=act)) for act in ACTIVATIONS]
    runs = _train_all(settings, configs, record_batches=True)
    series = []
    for run in runs:
        steps = list(range(1, len(run.batch_rmse) + 1))
        series.append((run.label, steps, [v for _, _, v in run.batch_rmse], {}))
    values = [y for s in series for y in s[2][len(s[2]) // 10 :]]
    plots = [
        plot_series(
            settings.out / "activations_batches.png",
            series,
            xlabel="mini-batch",
            ylabel="training RMSE (mini-batch)",
            title="Figure 2: activations, n,128,128,128,n (4 layers)",
            ylim=robust_ylim(values, quantile=0.98),
        ),
        _plot_epochs(
            settings.out / "activations_valid.png",
            runs,
            "valid_rmse",
            "activations: evaluation RMSE",
        ),
    ]
    table = [
        ("label", "activation"),
        ("final_train_rmse", "training RMSE (last epoch)"),
        ("best_valid_rmse", "best eval RMSE"),
        ("best_epoch", "at epoch"),
        ("test_rmse", "test RMSE"),
        ("diverged", "diverged"),
    ]
    notes = (
        "Paper (Netflix 3M, Figure 2): ELU, SELU and LRELU train best; sigmoid and tanh "
        "(and relu, relu6) clearly worse; identity not shown."
    )
    return _write_common(
        settings, "activations", RECIPES["activations"].title, runs, table, notes, plots
    )


def depth(settings: Settings, epochs: int) -> RecipeOutput:
    """Table 2: 2..12 layers of 128 units (encoder and decoder together)."""
    base = settings.base_config(**PAPER_PROCEDURE, hidden=[128], epochs=epochs)
    configs = [
        (f"{layers} layers", variant(base, hidden=[128] * (layers // 2))) for layers in DEPTHS
    ]
    runs = _train_all(settings, configs)
    plots = [
        _plot_epochs(
            settings.out / "depth_valid.png", runs, "valid_rmse", "Table 2: depth, 128 units"
        ),
    ]
    best = [
        (int(r.label.split()[0]), r.best_valid_rmse) for r in runs if r.best_valid_rmse is not None
    ]
    plots.append(
        plot_series(
            settings.out / "depth_best.png",
            [("best evaluation RMSE", [b[0] for b in best], [b[1] for b in best], {"marker": "o"})],
            xlabel="layers (encoder + decoder)",
            ylabel="best evaluation RMSE",
            title="Table 2: evaluation RMSE by depth",
        )
    )
    table = [
        ("label", "layers"),
        ("architecture", "architecture"),
        ("n_params", "parameters"),
        ("best_valid_rmse", "best eval RMSE"),
        ("best_epoch", "at epoch"),
        ("test_rmse", "test RMSE"),
    ]
    notes = (
        "Paper (Netflix 3M, Table 2): going from 2 to 4 layers helps a lot, further depth "
        "helps a little up to a point, then stops helping."
    )
    return _write_common(settings, "depth", RECIPES["depth"].title, runs, table, notes, plots)


def width(settings: Settings, epochs: int) -> RecipeOutput:
    """Figure 3: one hidden layer of 128..1024, constrained and not; train and eval per epoch."""
    base = settings.base_config(**PAPER_PROCEDURE, hidden=[128], epochs=epochs)
    configs = []
    styles: dict[str, dict[str, Any]] = {}
    colors = dict(zip(WIDTHS, ("C0", "C1", "C2", "C3"), strict=True))
    for w in WIDTHS:
        for constrained in (False, True):
            label = f"{w}{' constrained' if constrained else ''}"
            configs.append((label, variant(base, hidden=[w], constrained=constrained)))
            styles[label] = {"color": colors[w], "linestyle": "--" if constrained else "-"}
    runs = _train_all(settings, configs)
    plots = [
        _plot_epochs(
            settings.out / "width_train.png",
            runs,
            "train_rmse",
            "Figure 3: width, training RMSE",
            styles,
        ),
        _plot_epochs(
            settings.out / "width_valid.png",
            runs,
            "valid_rmse",
            "Figure 3: width, evaluation RMSE",
            styles,
        ),
    ]
    table = [
        ("label", "hidden layer"),
        ("n_params", "parameters"),
        ("final_train_rmse", "training RMSE (last)"),
        ("final_valid_rmse", "eval RMSE (last)"),
        ("best_valid_rmse", "best eval RMSE"),
        ("best_epoch", "at epoch"),
        ("test_rmse", "test RMSE"),
    ]
    notes = (
        "Paper (Netflix 3M, Figure 3): wider layers drive training RMSE down but evaluation "
        "RMSE up (over-fitting); constraining the decoder reduces it but does not remove it."
    )
    return _write_common(settings, "width", RECIPES["width"].title, runs, table, notes, plots)


def dropout(settings: Settings, epochs: int) -> RecipeOutput:
    """Figure 4: dropout on the code layer of n,512,512,1024,512,512,n."""
    base = settings.base_config(**PAPER_PROCEDURE, hidden=WIDE_HIDDEN, epochs=epochs)
    configs = [(f"dp {p:g}", variant(base, dropout=p)) for p in DROPOUTS]
    runs = _train_all(settings, configs)
    plots = [
        _plot_epochs(
            settings.out / "dropout_valid.png",
            runs,
            "valid_rmse",
            "Figure 4: dropout, evaluation RMSE",
        ),
        _plot_epochs(
            settings.out / "dropout_train.png", runs, "train_rmse", "dropout: training RMSE"
        ),
    ]
    table = [
        ("label", "dropout"),
        ("final_train_rmse", "training RMSE (last)"),
        ("final_valid_rmse", "eval RMSE (last)"),
        ("best_valid_rmse", "best eval RMSE"),
        ("best_epoch", "at epoch"),
        ("test_rmse", "test RMSE"),
    ]
    notes = (
        "Paper (Netflix Full, Figure 4): without dropout this wide model over-fits; "
        "0.8 gives the best evaluation RMSE, 0.5 and 0.65 are in between."
    )
    return _write_common(settings, "dropout", RECIPES["dropout"].title, runs, table, notes, plots)


def refeed(settings: Settings, epochs: int) -> RecipeOutput:
    """Figure 5: lr 0.001 with and without dense re-feeding, lr 0.005 with and without."""
    base = settings.base_config(
        **{**PAPER_PROCEDURE, "dropout": 0.8}, hidden=WIDE_HIDDEN, epochs=epochs
    )
    cases = [
        ("lr 0.001", 0.001, 0),
        ("lr 0.001 + refeed", 0.001, 1),
        ("lr 0.005", 0.005, 0),
        ("lr 0.005 + refeed", 0.005, 1),
    ]
    configs = [(label, variant(base, lr=lr, refeed_steps=k)) for label, lr, k in cases]
    runs = _train_all(settings, configs)
    plots = [
        _plot_epochs(
            settings.out / "refeed_valid.png",
            runs,
            "valid_rmse",
            "Figure 5: re-feeding, evaluation RMSE",
        ),
        _plot_epochs(
            settings.out / "refeed_train.png", runs, "train_rmse", "re-feeding: training RMSE"
        ),
    ]
    table = [
        ("label", "setting"),
        ("final_train_rmse", "training RMSE (last)"),
        ("best_valid_rmse", "best eval RMSE"),
        ("best_epoch", "at epoch"),
        ("test_rmse", "test RMSE"),
        ("diverged", "diverged"),
    ]
    notes = (
        "Paper (Netflix Full, Figure 5; n,512,512,1024,dp0.8,512,512,n): re-feeding alone "
        "changes little at lr 0.001; lr 0.005 without re-feeding is worse; lr 0.005 with "
        "re-feeding is best."
    )
    return _write_common(settings, "refeed", RECIPES["refeed"].title, runs, table, notes, plots)


def comparison(settings: Settings, epochs: int) -> RecipeOutput:
    """Table 3: DeepRec (project defaults, or --config/--set) against the baselines."""
    return run_comparison(settings, epochs)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "activations",
            "Figure 2 — activation functions (training RMSE per mini-batch)",
            20,
            activations,
        ),
        Recipe("depth", "Table 2 — depth: 2 to 12 layers of 128 units", 30, depth),
        Recipe(
            "width", "Figure 3 — width and over-fitting: one layer, constrained or not", 30, width
        ),
        Recipe("dropout", "Figure 4 — dropout on n,512,512,1024,512,512,n", 30, dropout),
        Recipe("refeed", "Figure 5 — dense re-feeding and learning rate", 30, refeed),
        Recipe("comparison", COMPARISON_TITLE, 40, comparison),
    )
}


def run_recipe(name: str, settings: Settings) -> RecipeOutput:
    """Run one recipe into settings.out (created if needed)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    settings.out.mkdir(parents=True, exist_ok=True)
    epochs = settings.epochs if settings.epochs is not None else recipe.default_epochs
    started = time.perf_counter()
    output = recipe.run(settings, epochs)
    output.seconds = time.perf_counter() - started
    return output

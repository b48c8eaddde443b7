"""`deeprec experiment NAME` (the paper's figures and tables) and `deeprec tune`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment)
    app.command("tune")(tune)


def _load(data: Path, subsample: float, seed: int):
    from deeprec.data.dataset import PreparedDataset
    from deeprec.experiments.common import subsample_users

    return subsample_users(PreparedDataset.load(data), subsample, seed)


def _check_out(out: Path, overwrite: bool) -> None:
    from deeprec.errors import ConfigError

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to reuse it")


def experiment(
    name: Annotated[
        str, typer.Argument(help="activations, depth, width, dropout, refeed or comparison.")
    ],
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.md, CSVs and PNGs.")],
    epochs: Annotated[
        int | None, typer.Option(help="Epochs per configuration (default: the recipe's).")
    ] = None,
    subsample: Annotated[
        float, typer.Option(help="Fraction of users to keep (seeded), to shorten a run.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for training and the user subsample.")] = 42,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML (or a packaged preset's name, e.g. ml-100k) replacing the recipe's "
            "base settings."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a base option, key=value; repeatable."),
    ] = None,
    baseline_epochs: Annotated[
        int | None,
        typer.Option(help="comparison: cap the baselines' epochs (default: their own)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="torch threads (0 = torch's default).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Reuse a non-empty --out folder.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No per-run progress lines.")
    ] = False,
) -> None:
    """Re-run one of the paper's experiments; writes a Markdown table, CSVs and PNG plots."""
    from deeprec.errors import ConfigError
    from deeprec.experiments.common import Settings
    from deeprec.experiments.recipes import RECIPES, run_recipe
    from deeprec.presets import config_path
    from deeprec.train.config import read_yaml

    if name not in RECIPES:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(RECIPES)}")
    _check_out(out, overwrite)
    settings = Settings(
        dataset=_load(data, subsample, seed),
        out=out,
        data_path=str(data),
        epochs=epochs,
        subsample=subsample,
        seed=seed,
        config_values=read_yaml(config_path(config)) if config else {},
        overrides=list(set_ or []),
        threads=threads,
        progress=not quiet,
        baseline_epochs=baseline_epochs,
    )
    result = run_recipe(name, settings)
    typer.echo(
        json.dumps(
            {
                "experiment": name,
                "out": str(out),
                "seconds": round(result.seconds, 1),
                "files": [p.name for p in result.files],
            }
        )
    )


def tune(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.csv/.md, best.yaml.")
    ],
    grid: Annotated[Path, typer.Option(help="YAML: base: {...} and grid: {key: \\[values]}.")],
    random: Annotated[
        int | None, typer.Option(help="Draw N random trials instead of the full grid.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for training, draws and subsample.")] = 42,
    epochs: Annotated[int | None, typer.Option(help="Force the epochs of every trial.")] = None,
    subsample: Annotated[float, typer.Option(help="Fraction of users to keep (seeded).")] = 1.0,
    threads: Annotated[int, typer.Option(help="torch threads (0 = torch's default).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Reuse a non-empty --out folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-trial lines.")] = False,
) -> None:
    """Search hyper-parameters on VALIDATION RMSE; report the chosen config's test RMSE once."""
    from deeprec.experiments.tune import load_space
    from deeprec.experiments.tune import tune as run_tune

    space = load_space(grid)
    _check_out(out, overwrite)
    result = run_tune(
        _load(data, subsample, seed),
        space,
        out,
        random=random,
        seed=seed,
        epochs=epochs,
        threads=threads,
        data_path=str(data),
        progress=not quiet,
    )
    best = result.rows[result.best_index]
    typer.echo(
        json.dumps(
            {
                "trials": len(result.rows),
                "best_trial": best["trial"],
                "best_valid_rmse": best["best_valid_rmse"],
                "best_config": str(out / "best.yaml"),
                "test_of_best_config": result.test,
            },
            default=str,
        )
    )

"""`deeprec quickstart`: the whole pipeline on built-in synthetic data, in a few minutes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)


def quickstart(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Working directory for raw/, data/ and run/.")
    ] = Path("deeprec-quickstart"),
    users: Annotated[int | None, typer.Option(help="Synthetic users (default 20,000).")] = None,
    items: Annotated[int | None, typer.Option(help="Synthetic items (default 2,000).")] = None,
    ratings: Annotated[
        int | None, typer.Option(help="Synthetic ratings (default 1,500,000).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a quickstart preset option, key=value; repeatable."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data, the split and the model.")] = 0,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Reuse a non-empty --out that is not a previous quickstart folder "
            "(a previous quickstart's output is always replaced)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Generate a synthetic Netflix-shaped dataset, split it like the paper's netflix-3m,
    train the quickstart preset, and print Table-1 statistics, test RMSE and predictions."""
    from deeprec import quickstart as qs
    from deeprec.presets import load_preset

    config = load_preset("quickstart").with_overrides(set_ or [])
    qs.run_quickstart(
        out,
        n_users=users or qs.DEFAULT_USERS,
        n_items=items or qs.DEFAULT_ITEMS,
        n_ratings=ratings or qs.DEFAULT_RATINGS,
        config=config,
        seed=seed,
        overwrite=overwrite,
        progress=not quiet and sys.stderr.isatty(),
        echo=typer.echo,
    )

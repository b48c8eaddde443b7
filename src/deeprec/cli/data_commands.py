"""`deeprec prepare` and `deeprec synth`: raw files to a prepared dataset (see deeprec.data)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from deeprec.errors import DataError

FORMAT_HELP = "Input format: netflix, movielens, csv or parquet (default: guessed from the names)."
SPLIT_HELP = (
    "How to split. netflix-full | netflix-3m | netflix-6m | netflix-1y: the paper's Table 1 "
    "windows. time:TRAIN_END:TEST_END (or time:TRAIN_START:TRAIN_END:TEST_START:TEST_END; "
    "YYYY-MM-DD, ends inclusive): train up to TRAIN_END, holdout after it. time-quantile:Q: "
    "train = the earliest fraction Q of ratings. random:TRAIN,VALID,TEST: seeded random "
    "fractions. given: INPUT... is a train file then a test file (or train, valid, test). "
    "column:NAME: a column whose values are train/valid/test. In time splits, holdout ratings "
    "of users/items unseen in train are dropped and the rest cut 50/50 into valid and test."
)


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _scale(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(x) for x in text.replace(":", ",").split(","))
    except ValueError as exc:
        raise DataError(f"--rating-scale {text!r} is not LOW:HIGH", field="rating_scale") from exc
    if low > high:
        raise DataError(f"--rating-scale {text!r}: LOW is above HIGH", field="rating_scale")
    return low, high


def prepare(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Rating files or folders (a Netflix folder with training_set/, mv_*.txt or "
            "combined_data_*.txt files; MovieLens u.data/ratings.dat/ratings.csv; CSV/TSV/"
            "Parquet). .gz/.xz/.bz2 are decompressed.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory.")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
    split: Annotated[str, typer.Option("--split", "-s", help=SPLIT_HELP)] = "random:0.9,0.05,0.05",
    seed: Annotated[
        int, typer.Option(help="Seed of every random draw (same seed, same files).")
    ] = 0,
    columns: Annotated[
        str | None,
        typer.Option(
            help="csv/parquet columns: user=COL,item=COL,rating=COL[,timestamp=COL]; COL is a "
            "header name or a 0-based position for files without a header. Default: common "
            "names (userId, movie_id, rating, timestamp, Date, ...)."
        ),
    ] = None,
    valid_fraction: Annotated[
        float,
        typer.Option(
            help="Where the split yields no validation rows (given, column with only "
            "train/test, random with VALID=0), this seeded fraction of train becomes validation."
        ),
    ] = 0.05,
    keep_unseen: Annotated[
        bool,
        typer.Option(
            "--keep-unseen",
            help="Keep valid/test ratings of users or items absent from train (default: drop "
            "and count them, the paper's rule).",
        ),
    ] = False,
    rating_scale: Annotated[
        str | None,
        typer.Option(
            help="LOW:HIGH; ratings outside are errors. Default: 1:5 for netflix, 0:5 for "
            "movielens, any finite number otherwise."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace --out if it exists.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    items: Annotated[
        Path | None,
        typer.Option(
            help="Item metadata file (titles, genres). Default: u.item, movies.dat, movies.csv "
            "or movie_titles.txt found next to the inputs. Other CSV/TSV files need "
            "--item-columns."
        ),
    ] = None,
    item_columns: Annotated[
        str | None,
        typer.Option(
            help="Columns of --items: item=COL,title=COL[,genres=COL] (genres as A|B); COL is "
            "a header name or a 0-based position."
        ),
    ] = None,
    no_items: Annotated[
        bool, typer.Option("--no-items", help="Do not look for item metadata.")
    ] = False,
) -> None:
    """Read rating files, split them, and write a prepared dataset (prints Table-1 statistics).

    Duplicate (user, item) ratings keep the latest one (by timestamp, else the last in file).
    Their count is reported and stored in meta.json. Output is written atomically.
    """
    from deeprec.data.prepare import format_table1, heldout_loss_warning, prepare_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = prepare_dataset(
            inputs,
            fmt,
            split,
            out,
            seed=seed,
            columns=columns,
            valid_fraction=valid_fraction,
            keep_unseen=keep_unseen,
            rating_scale=_scale(rating_scale),
            overwrite=overwrite,
            progress=_progress(quiet),
            items=False if no_items else items,
            item_columns=item_columns,
        )
    for item in caught:
        typer.echo(f"warning: {item.message}", err=True)
    lost = heldout_loss_warning(dataset.meta)
    if lost is not None:
        typer.echo(f"warning: {lost}", err=True)
    typer.echo(f"prepared {out} (split {split}, seed {seed})")
    typer.echo(format_table1(dataset.meta))
    if "item_metadata" in dataset.meta:
        info = dataset.meta["item_metadata"]
        typer.echo(
            f"item titles: {info['items_with_title']:,} of {dataset.n_items:,} items "
            f"(from {info['path']})"
        )


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    preset: Annotated[
        str,
        typer.Option(
            help="Size preset (users/items/ratings): tiny 2k/500/50k, small 10k/2k/1M, "
            "medium 100k/8k/10M, netflix 480,189/17,770/100,480,507."
        ),
    ] = "small",
    users: Annotated[
        int | None, typer.Option(help="Number of users (overrides the preset).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Number of items (overrides the preset).")
    ] = None,
    ratings: Annotated[
        int | None, typer.Option(help="Number of ratings (overrides the preset).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="netflix (training_set/mv_*.txt), netflix-combined (combined_data_*.txt), "
            "netflix-both, or csv (ratings.csv: user,item,rating,date).",
        ),
    ] = "netflix",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace --out if it exists.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write synthetic Netflix-like raw rating files (power-law popularity and activity,
    biases plus low-rank taste, 1..5 stars, dates 1999-12..2005-12 growing over time)."""
    from deeprec.data.synth import synthesize

    info = synthesize(
        out,
        preset=preset,
        n_users=users,
        n_items=items,
        n_ratings=ratings,
        fmt=fmt,
        seed=seed,
        overwrite=overwrite,
        progress=_progress(quiet),
    )
    typer.echo(
        f"wrote {out}: {info['ratings']:,} ratings, {info['users']:,} users, "
        f"{info['items']:,} items ({', '.join(info['layouts'])})"
    )


def register(app: typer.Typer) -> None:
    """Attach the data commands to the app."""
    app.command("prepare")(prepare)
    app.command("synth")(synth)

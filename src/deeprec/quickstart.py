"""The README's one command: synthetic Netflix-shaped data -> netflix-3m split -> train ->
evaluate -> Table-1 statistics, test RMSE and a few predictions for one user.

Needs no download: the ratings come from `deeprec.data.synth` (seeded), so the same command
gives the same numbers on the same machine.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeprec.train.config import TrainConfig

# Sized so the whole command takes a few minutes on a 2-core CPU.
DEFAULT_USERS = 20_000
DEFAULT_ITEMS = 2_000
DEFAULT_RATINGS = 1_500_000
SPLIT = "netflix-3m"
MARKER = ".deeprec-quickstart"  # written into every quickstart folder
OWN_ENTRIES = {"raw", "data", "run", MARKER}


@dataclass
class QuickstartResult:
    data_dir: Path
    run_dir: Path
    table1: str
    summary: dict[str, Any]
    user: Any
    predictions: list[dict[str, Any]]
    seconds: float


def run_quickstart(
    out: str | Path,
    *,
    n_users: int = DEFAULT_USERS,
    n_items: int = DEFAULT_ITEMS,
    n_ratings: int = DEFAULT_RATINGS,
    config: TrainConfig | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run every stage into `out` (raw/, data/, run/) and return what was printed.

    A folder that holds a previous quickstart's output (only raw/, data/, run/ and the
    marker file) is replaced, so the command can be run again; the previous output is
    moved aside first and put back if this run fails. Any other non-empty folder is
    refused unless `overwrite`."""
    from deeprec.presets import load_preset

    started = time.perf_counter()
    out = Path(out)
    previous = _previous_output(out, overwrite)
    with _replacing(out, previous, echo):
        return _run_stages(
            out, started, n_users=n_users, n_items=n_items, n_ratings=n_ratings,
            config=config or load_preset("quickstart"), seed=seed, progress=progress, echo=echo,
        )  # fmt: skip


def _previous_output(out: Path, overwrite: bool) -> bool:
    """Whether `out` holds an earlier quickstart's output to replace (raises if it holds
    anything else, unless `overwrite`)."""
    if not out.exists() or not any(out.iterdir()):
        return False
    names = {p.name for p in out.iterdir()}
    ours = names <= OWN_ENTRIES and (
        MARKER in names or (out / "data" / "meta.json").is_file()  # made before the marker
    )
    if ours:
        return True
    if overwrite:
        return False
    raise FileExistsError(
        f"{out} is not empty and is not a previous quickstart folder (pass --overwrite to "
        "replace its contents, or choose another --out)"
    )


@contextmanager
def _replacing(out: Path, previous: bool, echo: Callable[[str], None]) -> Iterator[None]:
    """Move a previous quickstart output aside, run, then delete it (or restore it if the
    run fails, removing what the failed run wrote)."""
    aside = out.with_name(f"{out.name}.previous-{os.getpid()}")
    if previous:
        out.rename(aside)
        echo(f"replacing the previous quickstart output in {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `deeprec quickstart`; a rerun replaces this folder\n")
    try:
        yield
    except BaseException:
        if previous:
            shutil.rmtree(out, ignore_errors=True)
            aside.rename(out)
        raise
    if previous:
        shutil.rmtree(aside, ignore_errors=True)


def _run_stages(
    out: Path,
    started: float,
    *,
    n_users: int,
    n_items: int,
    n_ratings: int,
    config: TrainConfig,
    seed: int,
    progress: bool,
    echo: Callable[[str], None],
) -> QuickstartResult:
    from deeprec.data.dataset import PreparedDataset
    from deeprec.data.prepare import format_table1, prepare_dataset
    from deeprec.data.synth import synthesize
    from deeprec.runs.training import train_run

    echo(f"[1/4] generating a synthetic Netflix-shaped log: {n_users:,} users, "
         f"{n_items:,} items, {n_ratings:,} ratings (seed {seed})")  # fmt: skip
    raw = out / "raw"
    synthesize(
        raw, n_users=n_users, n_items=n_items, n_ratings=n_ratings, fmt="netflix", seed=seed,
        overwrite=True, progress=progress,
    )  # fmt: skip

    echo(f"[2/4] preparing it with the paper's {SPLIT} split")
    data_dir = out / "data"
    prepare_dataset([raw], "netflix", SPLIT, data_dir, seed=seed, overwrite=True,
                    progress=progress)  # fmt: skip
    dataset = PreparedDataset.load(data_dir)
    table1 = format_table1(dataset.meta)
    echo(table1)

    echo(f"[3/4] training {'x'.join(map(str, config.hidden))} {config.activation} autoencoder "
         f"for {config.epochs} epochs")  # fmt: skip
    summary = train_run(data_dir, config, out / "run", overwrite=True, progress=progress, echo=echo)

    echo("[4/4] evaluating the best checkpoint on the test split")
    from deeprec.base import load_model

    model = load_model(out / "run" / "best")
    user, predictions = _example_user(model, dataset)
    result = QuickstartResult(
        data_dir=data_dir,
        run_dir=out / "run",
        table1=table1,
        summary=summary,
        user=user,
        predictions=predictions,
        seconds=time.perf_counter() - started,
    )
    for line in format_result(result):
        echo(line)
    return result


def _example_user(model, dataset) -> tuple[Any, list[dict[str, Any]]]:
    """The test user with the most test ratings: truth vs prediction on up to 5 of them."""
    test = dataset.test
    counts = np.bincount(test.users, minlength=dataset.n_users)
    index = int(np.argmax(counts))
    rows = np.flatnonzero(test.users == index)[:5]
    user = dataset.user_ids[index]
    items = dataset.item_ids[test.items[rows]]
    preds = model.predict(np.full(rows.shape[0], user), items)
    return user.item() if hasattr(user, "item") else user, [
        {"item": i.item() if hasattr(i, "item") else i, "rating": float(r), "prediction": float(p)}
        for i, r, p in zip(items, test.ratings[rows], preds, strict=True)
    ]


def format_result(result: QuickstartResult) -> list[str]:
    test = result.summary.get("test", {})
    lines = [
        f"best epoch {result.summary.get('best_epoch')} of {result.summary.get('epochs_run')}, "
        f"validation RMSE {result.summary.get('best_valid_rmse', float('nan')):.4f}",
        f"test RMSE {test.get('rmse', float('nan')):.4f} (predictions clipped to the rating "
        f"scale; unclipped {test.get('rmse_unclipped', float('nan')):.4f}) on "
        f"{test.get('n', 0):,} ratings",
        f"predictions for user {result.user} (held-out test ratings):",
    ]
    for p in result.predictions:
        lines.append(f"  item {p['item']}: rated {p['rating']:g}, predicted {p['prediction']:.2f}")
    lines.append(
        f"done in {result.seconds:.0f}s; run directory {result.run_dir} "
        f"(deeprec evaluate --run {result.run_dir})"
    )
    return lines

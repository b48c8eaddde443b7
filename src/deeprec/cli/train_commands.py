"""`deeprec train`, `deeprec evaluate`, `deeprec predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deeprec.errors import DataError


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)


def train(
    data: Annotated[
        Path | None, typer.Option(help="Prepared dataset directory (from `deeprec prepare`).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory to create (config, metrics, models)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML config file, or the name of a preset shipped with deeprec "
            "(quickstart, ml-100k, ml-1m, ml-100k-ensemble); without it the model is "
            "chosen on validation (deeprec.selection)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one option, key=value (YAML value); repeatable."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Reuse a non-empty run directory.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this run directory from its last checkpoint (same data order, "
            "bit-identical result); --set may change epochs and checkpoint_* only."
        ),
    ] = None,
    auto_resume: Annotated[
        bool,
        typer.Option(
            help="Continue --out from its last checkpoint if it has one, else start it (with "
            "the same config apart from epochs and checkpoint_*): for torchrun --max-restarts, "
            "which reruns the same command after a failure."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda or auto (CUDA when present); overrides the config's device."),
    ] = None,
) -> None:
    """Train a deep autoencoder; keep the best checkpoint by validation RMSE; report test RMSE.

    A config with a top-level `ensemble:` key trains several models and blends them with
    weights fitted on the validation split (deeprec.ensemble; --set applies to every member).

    Data-parallel under torchrun: `torchrun --nproc_per_node=N -m deeprec train ...`
    (batch_size is the global batch; only rank 0 writes the run directory).
    """
    from deeprec.ensemble import is_ensemble_yaml
    from deeprec.errors import ConfigError
    from deeprec.runs.training import (
        has_checkpoint,
        never_checkpointed,
        resume_device,
        resume_run,
        select_run,
        train_ensemble_run,
        train_run,
    )
    from deeprec.selection import needs_selection
    from deeprec.train.config import TrainConfig
    from deeprec.train.distributed import LaunchEnv, distributed_session, resolve_device

    overrides = [*(set_ or []), *([f"device={device}"] if device else [])]
    if config is not None:  # a file, or a packaged preset by name (deeprec.presets)
        from deeprec.presets import config_path

        config = config_path(config)
    if resume is not None:
        if out is not None or config is not None or overwrite or auto_resume:
            raise ConfigError(
                "--resume RUN_DIR takes no --out, --config, --overwrite or --auto-resume"
            )
        with distributed_session(resume_device(resume, overrides)) as dist:
            main = dist is None or dist.is_main
            summary = resume_run(
                resume,
                overrides=overrides,
                data_dir=data,
                progress=not quiet and main,
                echo=typer.echo,
            )
        if main:
            typer.echo(json.dumps(summary, indent=2, default=str))
        return
    if data is None or out is None:
        raise ConfigError("deeprec train needs --data and --out (or --resume RUN_DIR)")
    if auto_resume and overwrite:
        raise ConfigError("--auto-resume continues --out; it cannot be combined with --overwrite")
    if config is not None and is_ensemble_yaml(config):  # a blend of several models
        if auto_resume:
            raise ConfigError("ensemble runs keep no checkpoints; --auto-resume cannot apply")
        if LaunchEnv.from_env() is not None:
            raise ConfigError("ensemble configs train single-process; not under torchrun")
        summary = train_ensemble_run(
            data,
            config,
            out,
            overrides=overrides,
            overwrite=overwrite,
            progress=not quiet,
            echo=typer.echo,
        )
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    if config is None and needs_selection(overrides):
        if auto_resume or LaunchEnv.from_env() is not None:
            raise ConfigError(
                "without --config the model is chosen on validation in one process; under "
                "torchrun or with --auto-resume pass --config (a selection run's RUN/config.yaml "
                "is the chosen model's config)"
            )
        resolve_device(TrainConfig().with_overrides(overrides).device)  # before any reading
        summary = select_run(
            data, TrainConfig.override_values(overrides), out, overwrite=overwrite,
            progress=not quiet, echo=typer.echo,
        )  # fmt: skip
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
    cfg = cfg.with_overrides(overrides)
    with distributed_session(cfg.device) as dist:
        main = dist is None or dist.is_main
        resuming = auto_resume and has_checkpoint(out)
        if dist is not None:  # [ddp] rank 0's view of the run directory decides
            resuming = dist.agree(resuming)
        if resuming:
            summary = resume_run(
                out, requested=cfg, data_dir=data, progress=not quiet and main, echo=typer.echo
            )
        else:  # --auto-resume also restarts a run killed before its first checkpoint
            again = overwrite or (auto_resume and never_checkpointed(out))
            summary = train_run(
                data, cfg, out, overwrite=again, progress=not quiet and main, echo=typer.echo
            )
    if main:
        typer.echo(json.dumps(summary, indent=2, default=str))


def evaluate(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    split: Annotated[str, typer.Option(help="train, valid or test.")] = "test",
    data: Annotated[
        Path | None, typer.Option(help="Prepared dataset; defaults to the one the run used.")
    ] = None,
) -> None:
    """Print one JSON object with rmse, mae and n of the run's best model on a split."""
    from deeprec.runs.directory import load_run_dataset, load_run_model

    model = load_run_model(run)
    data_dir, dataset = load_run_dataset(run, data)
    if len(dataset.split(split)) == 0:
        raise DataError(f"split {split!r} of {data_dir} is empty")
    typer.echo(json.dumps({"split": split, **model.score(dataset, split)}))


def predict(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    pairs: Annotated[Path, typer.Option(help="CSV with header: user,item[,rating] (raw ids).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output CSV: user,item[,title],prediction[,rating],known (title: when the model has item titles).",
        ),
    ],
    unknown: Annotated[
        str,
        typer.Option(
            help="Pairs with a user or item the model never saw: 'mean' (the training "
            "mean, known=false), 'empty' (no prediction) or 'error' (stop)."
        ),
    ] = "mean",
) -> None:
    """Predict ratings for (user, item) pairs in raw ids.

    The output's `known` column is false where the user or the item is not in the model
    (Surprise's was_impossible); those pairs get the training mean (see --unknown), and a
    warning says how many there were.
    """
    import polars as pl

    from deeprec.atomic import atomic_path
    from deeprec.runs.directory import load_run_model

    modes = {"mean": "fallback", "empty": "nan", "error": "raise"}
    if unknown not in modes:
        raise DataError(f"--unknown must be one of {', '.join(modes)}, got {unknown!r}")
    model = load_run_model(run)
    if not pairs.is_file():
        raise DataError("file not found", path=pairs)
    try:
        frame = pl.read_csv(pairs, infer_schema_length=10000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read CSV ({exc})", path=pairs) from None
    for column in ("user", "item"):
        if column not in frame.columns:
            raise DataError(f"missing column {column!r} (have {frame.columns})", path=pairs)
    users = frame.get_column("user").to_numpy()
    items = frame.get_column("item").to_numpy()
    known_user, known_item = model.known(users, items)
    known = known_user & known_item
    predictions = model.predict(users, items, unknown=modes[unknown])
    result = frame.select("user", "item").with_columns(
        pl.Series("prediction", predictions, nan_to_null=True)
    )
    if "rating" in frame.columns:
        result = result.with_columns(frame.get_column("rating"))
    result = result.with_columns(pl.Series("known", known))
    if getattr(model, "has_titles", False):
        result = result.insert_column(
            2, pl.Series("title", model.item_titles(items), dtype=pl.String)
        )
    n_unknown = int((~known).sum())
    if n_unknown:
        fallback = (
            f"they get the training mean {model.global_mean_:.4f}"
            if unknown == "mean"
            else "their prediction is left empty"
        )
        typer.echo(
            f"warning: {n_unknown:,} of {len(known):,} pairs have a user or item the model "
            f"does not know ({int((~known_user).sum()):,} unknown user(s), "
            f"{int((~known_item).sum()):,} unknown item(s)); {fallback} (known=false in {out})",
            err=True,
        )
    with atomic_path(out) as tmp:
        result.write_csv(tmp)
    typer.echo(f"wrote {result.height} predictions to {out}")

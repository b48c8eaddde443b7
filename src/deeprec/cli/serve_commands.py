"""`deeprec recommend`, `deeprec rank-eval`, `deeprec serve`, `deeprec export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from deeprec.errors import DataError


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend)
    app.command("rank-eval")(rank_eval)
    app.command("serve")(serve)
    app.command("export")(export)


def read_ratings_file(path: Path) -> dict[Any, float]:
    """A new user's ratings: JSON {item: rating} or CSV with header item,rating."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", path=path) from None
        if not isinstance(value, dict):
            raise DataError("expected a JSON object {item id: rating}", path=path)
        return value
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema_length=10000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read CSV ({exc})", path=path) from None
    for column in ("item", "rating"):
        if column not in frame.columns:
            raise DataError(f"missing column {column!r} (have {frame.columns})", path=path)
    items = frame.get_column("item").to_list()
    ratings = frame.get_column("rating").to_list()
    if len(set(items)) != len(items):
        raise DataError("an item is rated more than once", path=path, field="item")
    return dict(zip(items, ratings, strict=True))


def _model(run: Path):
    from deeprec.runs.directory import load_run_model

    return load_run_model(run)


def recommend(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    user: Annotated[str | None, typer.Option(help="A known user's raw id.")] = None,
    ratings: Annotated[
        Path | None,
        typer.Option(help="A new user's ratings: JSON {item: rating} or CSV item,rating."),
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Top-k of every user to --out (Parquet or CSV).")
    ] = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of items per user.")] = 10,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file for --all (.parquet or .csv).")
    ] = None,
    include_rated: Annotated[bool, typer.Option(help="Keep items the user already rated.")] = False,
    chunk_size: Annotated[int, typer.Option(help="Users scored per chunk (--all).")] = 512,
) -> None:
    """Top-k items for a known user (--user), a new user (--ratings) or everyone (--all).

    Items are ranked by `score`, the model's unclipped output (it may exceed the rating
    scale, so the best items do not all tie at the maximum); `prediction` is the score
    clipped to the rating scale."""
    chosen = sum(x for x in (user is not None, ratings is not None, all_users))
    if chosen != 1:
        raise DataError("give exactly one of --user, --ratings or --all")
    model = _model(run)
    exclude = not include_rated
    if all_users:
        if out is None:
            raise DataError("--all needs --out FILE (.parquet or .csv)")
        stats = model.recommend_all(out, k=k, exclude_rated=exclude, chunk_size=chunk_size)
        typer.echo(json.dumps(stats))
        return
    if user is not None:
        frame = model.recommend(user, k, exclude_rated=exclude)
        payload: dict[str, Any] = {
            "user": user,
            "items": [
                {
                    "item": item.item() if hasattr(item, "item") else item,
                    **({"title": title} if "title" in frame else {}),
                    "score": float(score),
                    "prediction": float(prediction),
                }
                for item, title, score, prediction in zip(
                    frame["item"],
                    frame["title"] if "title" in frame else [None] * len(frame),
                    frame["score"],
                    frame["prediction"],
                    strict=True,
                )
            ],
        }
    else:
        assert ratings is not None
        result = model.recommend_for(read_ratings_file(ratings), k, exclude_rated=exclude)
        data = result.to_dict()
        payload = {
            "items": data["results"],
            "n_ratings_used": data["n_ratings_used"],
            "unknown_rated": data["unknown_rated"],
        }
        if data["unknown_rated"]:
            typer.echo(
                f"warning: {len(data['unknown_rated'])} rated item(s) unknown to the model "
                f"were not used: {data['unknown_rated'][:10]}",
                err=True,
            )
    typer.echo(json.dumps(payload, indent=2))


def rank_eval(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Cut-off of the ranked list.")] = 10,
    threshold: Annotated[float, typer.Option(help="Held-out rating >= this is relevant.")] = 4.0,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    data: Annotated[
        Path | None, typer.Option(help="Prepared dataset; defaults to the one the run used.")
    ] = None,
) -> None:
    """precision@k, recall@k, NDCG@k, MAP@k on held-out ratings (Spark MLlib definitions)."""
    from deeprec.recommend.metrics import evaluate_ranking
    from deeprec.runs.directory import load_run_dataset

    model = _model(run)
    _, dataset = load_run_dataset(run, data)
    result = evaluate_ranking(model, dataset, split, k=k, threshold=threshold)
    typer.echo(json.dumps({"split": split, **result}))


def serve(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    threads: Annotated[int, typer.Option(help="torch threads for inference.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the run's best model over HTTP (GET /health, /model, /items, /similar; POST
    /predict, /recommend) and a page to try it at / (search, rate, see recommendations)."""
    from deeprec.serve.runner import serve as run_server

    typer.echo(f"serving {run} on http://{host}:{port} (OpenAPI at /docs)", err=True)
    run_server(run, host, port, threads=threads, log_level=log_level)


def export(
    run: Annotated[Path, typer.Option(help="Run directory from `deeprec train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.onnx or .pt).")],
    format_: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    check: Annotated[int, typer.Option(help="Random users for the parity check.")] = 64,
) -> None:
    """Export the autoencoder; report max |exported - PyTorch| on random users (fails > 1e-5)."""
    from deeprec.recommend.export import export_model

    report = export_model(_model(run), out, format_, n_check=check)
    typer.echo(json.dumps(report, indent=2))
    if not report["parity_ok"]:
        raise DataError(
            f"parity check failed: max abs difference {report['parity_max_abs_diff']:.3g} > 1e-5"
        )

"""Top-N recommendation: known users one at a time, or all users in bounded chunks to a file.

Ranking uses the model's raw (unclipped) outputs, and that is what ``score`` reports: the
number the list is sorted by, which may lie above the rating scale (clipped scores made the
top items tie at the scale's maximum). ``prediction`` beside it is the same value clipped
to the training scale (what `predict` returns). Rated items are excluded by masking the
training CSR rows with -inf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deeprec.errors import DataError, UnknownIdError
from deeprec.recommend.fitted import FittedModel
from deeprec.recommend.ids import resolve

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


OUTPUT_FORMATS = ("parquet", "csv")


def check_k(k: Any, n_items: int | None = None) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise DataError(f"k must be a positive integer, got {k!r}", field="k")
    return int(k) if n_items is None else min(int(k), n_items)


def top_k(
    scores: torch.Tensor, k: int, exclude: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(values, indices, valid) of each row's k best columns, excluded cells never chosen.

    `exclude` is (row position, column) pairs; `valid` is false where a row had fewer than
    k candidates left (those slots hold -inf and must be dropped).
    """
    if exclude is not None and exclude[0].numel():
        scores = scores.clone()
        scores[exclude[0], exclude[1]] = -torch.inf
    k = min(k, scores.shape[1])
    values, indices = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    return values, indices, torch.isfinite(values)


def user_index(model: FittedModel, user: Any) -> int:
    index, known = resolve(model.user_ids_, [user])
    if not known[0]:
        raise UnknownIdError(
            f"unknown user {user!r}: not in the model's training data "
            "(give the user's ratings instead to fold them in)",
            field="user",
        )
    return int(index[0])


def _rated(model: FittedModel, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    local, cols, _ = model.known_ratings().select_rows(users)  # training + validation
    return torch.from_numpy(local), torch.from_numpy(cols)


def recommend_user(
    model: FittedModel,
    user: Any,
    k: int = 10,
    *,
    exclude_rated: bool = True,
    items: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """The k best items for a known user as a DataFrame (item, score, prediction), best
    first: ``score`` is the unclipped ranking score, ``prediction`` it clipped to the scale."""

    model._check_fitted()
    k = check_k(k)
    u = user_index(model, user)
    users = np.array([u], dtype=np.int64)
    scores = torch.from_numpy(np.asarray(model._score_users(users), dtype=np.float64))
    candidates = candidate_mask(model, items)
    if candidates is not None:
        scores[:, torch.from_numpy(~candidates)] = -torch.inf
    values, indices, valid = top_k(scores, k, _rated(model, users) if exclude_rated else None)
    keep = indices[0][valid[0]].numpy()
    return scored_frame(model, keep, values[0][valid[0]].numpy())


def scored_frame(model: FittedModel, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """(item, score, prediction): raw item ids, unclipped scores, scores clipped to the scale."""
    import pandas as pd

    low, high = model.rating_range_
    return pd.DataFrame(
        {
            "item": model.item_ids_[items],
            "score": scores,
            "prediction": np.clip(scores, low, high),
        }
    )


def iter_top_n(
    model: FittedModel,
    users: np.ndarray,
    k: int,
    *,
    exclude_rated: bool = True,
    chunk_size: int = 512,
    candidates: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(user index, rank, item index, raw score) arrays per chunk of users, flattened.

    Memory is bounded by chunk_size x n_items scores; each chunk is one torch.topk call.
    `candidates` (a bool mask over item indices) limits the items that may be chosen.
    """
    k = check_k(k)
    if chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    for begin in range(0, users.shape[0], chunk_size):
        chunk = users[begin : begin + chunk_size]
        scores = torch.from_numpy(np.asarray(model._score_users(chunk)))
        if candidates is not None:
            scores[:, torch.from_numpy(~candidates)] = -torch.inf
        values, indices, valid = top_k(scores, k, _rated(model, chunk) if exclude_rated else None)
        rows = np.repeat(chunk, values.shape[1]).reshape(values.shape)
        ranks = np.broadcast_to(np.arange(1, values.shape[1] + 1), values.shape)
        mask = valid.numpy()
        yield rows[mask], ranks[mask], indices.numpy()[mask], values.numpy()[mask]


def candidate_mask(model: FittedModel, items: Sequence[Any] | None) -> np.ndarray | None:
    """A bool mask over item indices for raw candidate ids (None: every item). Unknown
    candidates cannot be scored: they are left out, and none known at all is an error."""
    if items is None:
        return None
    index, known = resolve(model.item_ids_, list(items))
    if not known.any():
        raise UnknownIdError("none of the candidate items is known to the model", field="items")
    mask = np.zeros(model.n_items, dtype=bool)
    mask[index[known]] = True
    return mask


def recommend_users(
    model: FittedModel,
    users: Sequence[Any],
    k: int = 10,
    *,
    exclude_seen: bool = True,
    items: Sequence[Any] | None = None,
    on_unknown: str = "raise",
    chunk_size: int = 512,
) -> pd.DataFrame:
    """Top-k for many known users as one DataFrame (user, rank, item, score, prediction).

    `items` restricts the candidates to those raw item ids; `exclude_seen` drops items the
    user rated in training. Unknown users raise UnknownIdError (``on_unknown="raise"``) or
    are left out (``"skip"``); new users are served by `recommend_for`.
    """
    import pandas as pd

    model._check_fitted()
    k = check_k(k)
    if on_unknown not in ("raise", "skip"):
        raise DataError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
    wanted = list(users)
    index, known = resolve(model.user_ids_, wanted)
    if not known.all() and on_unknown == "raise":
        missing = [u for u, ok in zip(wanted, known, strict=True) if not ok]
        raise UnknownIdError(
            f"{len(missing)} unknown user id(s): {missing[:10]} (pass on_unknown='skip' to "
            "leave them out, or fold new users in with recommend_for)",
            field="users",
        )
    parts = list(
        iter_top_n(
            model,
            index[known],
            k,
            exclude_rated=exclude_seen,
            chunk_size=chunk_size,
            candidates=candidate_mask(model, items),
        )
    )
    if parts:
        rows, ranks, cols, scores = (np.concatenate(x) for x in zip(*parts, strict=True))
    else:
        rows = ranks = cols = np.zeros(0, np.int64)
        scores = np.zeros(0)
    low, high = model.rating_range_
    return pd.DataFrame(
        {
            "user": model.user_ids_[rows],
            "rank": ranks.astype(np.int32),
            "item": model.item_ids_[cols],
            "score": scores,
            "prediction": np.clip(scores, low, high),
        }
    )


def output_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt is None:
        suffix = Path(path).suffix.lower()
        fmt = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(suffix)
        if fmt is None:
            raise DataError(
                f"cannot tell the output format from {Path(path).name!r}; "
                "use a .parquet or .csv file name or pass the format",
                path=path,
            )
    if fmt not in OUTPUT_FORMATS:
        raise DataError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    return fmt


def write_top_n(
    model: FittedModel,
    out: str | Path,
    *,
    users: Sequence[Any] | None = None,
    k: int = 10,
    exclude_rated: bool = True,
    chunk_size: int = 512,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the top-k of every user (or of `users`, raw ids) to Parquet or CSV atomically.

    Columns: user, rank (1 = best), item, score (unclipped, what the rank follows),
    prediction (score clipped to the rating scale). Written chunk by chunk, so memory stays
    bounded whatever the number of users; the file appears only once complete.
    """
    import pyarrow as pa

    from deeprec.atomic import atomic_path

    model._check_fitted()
    fmt = output_format(out, fmt)
    if users is None:
        index = np.arange(model.n_users, dtype=np.int64)
    else:
        index, known = resolve(model.user_ids_, users)
        if not known.all():
            missing = [u for u, ok in zip(users, known, strict=True) if not ok]
            raise UnknownIdError(
                f"{len(missing)} unknown user id(s): {missing[:10]}", field="users"
            )
    low, high = model.rating_range_
    n_rows = 0
    schema = None
    with atomic_path(out) as tmp:
        writer: Any = None
        try:
            for rows, ranks, items, scores in iter_top_n(
                model, index, k, exclude_rated=exclude_rated, chunk_size=chunk_size
            ):
                table = pa.table(
                    {
                        "user": pa.array(model.user_ids_[rows]),
                        "rank": pa.array(ranks.astype(np.int32)),
                        "item": pa.array(model.item_ids_[items]),
                        "score": pa.array(scores.astype(np.float32)),
                        "prediction": pa.array(np.clip(scores, low, high).astype(np.float32)),
                    }
                )
                if writer is None:
                    schema = table.schema
                    writer = _open_writer(tmp, fmt, schema)
                writer.write_table(table)
                n_rows += table.num_rows
                if progress is not None:
                    progress(int(np.unique(rows).shape[0]))
            if writer is None:  # no users: still write a valid, empty file with the header
                schema = pa.schema(
                    [
                        ("user", _arrow_type(model.user_ids_)),
                        ("rank", pa.int32()),
                        ("item", _arrow_type(model.item_ids_)),
                        ("score", pa.float32()),
                        ("prediction", pa.float32()),
                    ]
                )
                writer = _open_writer(tmp, fmt, schema)
        finally:
            if writer is not None:
                writer.close()
    return {"path": str(out), "format": fmt, "users": int(index.shape[0]), "rows": n_rows, "k": k}


def _open_writer(path: Path, fmt: str, schema: Any) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(str(path), schema)
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(str(path), schema)


def _arrow_type(ids: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.string() if ids.dtype.kind in "UO" else pa.from_numpy_dtype(ids.dtype)

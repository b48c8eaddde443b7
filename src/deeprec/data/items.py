"""Item metadata (titles, genres): readers for the formats that ship them, and alignment.

Known files, found next to the ratings files by `find_item_file`:

- MovieLens 100K ``u.item``: ``id|title|release|video|url|19 genre flags`` (latin-1); the
  flags are named by ``u.genre`` beside it (the standard 19 names when it is absent).
- MovieLens 1M/10M ``movies.dat``: ``id::title::A|B`` (latin-1); MovieTweetings'
  ``movies.dat`` has the same layout in UTF-8 (the encoding is detected).
- MovieLens 20M/latest ``movies.csv``: CSV with a header ``movieId,title,genres``, quoted
  titles, UTF-8.
- Netflix ``movie_titles.txt``: ``id,year,title`` (latin-1; the title may contain commas).

Any other CSV/TSV reads with ``columns`` (``item=COL,title=COL[,genres=COL]``, a header name
or a 0-based position). The result is a table of strings: item, title, genres (``A|B``,
null when unknown); `align` turns it into arrays in a dataset's item order.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from deeprec.errors import DataError

ITEM_FILES = ("u.item", "movies.dat", "movies.csv", "movie_titles.txt")
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
NO_GENRES = {"", "(no genres listed)"}
SCHEMA = {"item": pl.String, "title": pl.String, "genres": pl.String}


def find_item_file(inputs: Sequence[str | Path]) -> Path | None:
    """The first known item file (see ITEM_FILES) in the folders of the rating inputs."""
    folders: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        folder = path if path.is_dir() else path.parent
        if folder not in folders:
            folders.append(folder)
    for folder in folders:
        for name in ITEM_FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def read_items(path: str | Path, columns: str | dict[str, str] | None = None) -> pl.DataFrame:
    """Read an item metadata file into a table (item, title, genres) of strings.

    The layout comes from the file name (ITEM_FILES) unless `columns` is given, which reads
    any CSV/TSV. Malformed lines raise DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("item metadata file not found", path=path)
    name = path.name.removesuffix(".gz")
    if columns is not None or name not in ITEM_FILES:
        rows = _read_generic(
            path, _parse_columns(columns, path), optional=set() if columns else {"genres"}
        )
    elif name == "u.item":
        rows = _read_u_item(path)
    elif name == "movies.dat":
        rows = _read_movies_dat(path)
    elif name == "movies.csv":
        rows = _read_generic(
            path, {"item": "movieId", "title": "title", "genres": "genres"}, optional={"genres"}
        )
    else:
        rows = _read_netflix_titles(path)
    seen: dict[str, int] = {}
    for line, item, _title, _genres in rows:
        if item in seen:
            raise DataError(
                f"item {item!r} is listed twice (also on line {seen[item]})", path=path, line=line
            )
        seen[item] = line
    return pl.DataFrame(
        {
            "item": [r[1] for r in rows],
            "title": [r[2] for r in rows],
            "genres": [r[3] for r in rows],
        },
        schema=SCHEMA,
    )


def align(table: pl.DataFrame | None, item_ids: np.ndarray) -> pl.DataFrame | None:
    """The rows of `table` whose item is in `item_ids`, in their order, with the item column
    converted to the ids' type (integer ids match '0000008' as 8). None when nothing matches."""
    if table is None or table.height == 0:
        return None
    from deeprec.data.dataset import lookup

    items = table.get_column("item").to_list()
    if item_ids.dtype.kind in "iu":
        parsed = [_as_int(v) for v in items]
        usable = np.array([v is not None for v in parsed], dtype=bool)
        raw = np.array([0 if v is None else v for v in parsed], dtype=np.int64)
    else:
        raw = np.array([str(v) for v in items], dtype=np.str_)
        usable = np.ones(len(items), dtype=bool)
    index = np.where(usable, lookup(item_ids, raw), -1)
    keep = np.flatnonzero(index >= 0)
    if keep.size == 0:
        return None
    order = keep[np.argsort(index[keep], kind="stable")]
    return pl.DataFrame(
        {
            "item": item_ids[index[order]],
            "title": table.get_column("title").gather(order),
            "genres": table.get_column("genres").gather(order),
        }
    )


def titles_array(table: pl.DataFrame | None, item_ids: np.ndarray) -> tuple[Any, Any] | None:
    """(titles, genres) as object arrays aligned with `item_ids` (None where unknown)."""
    aligned = align(table, item_ids)
    if aligned is None:
        return None
    from deeprec.data.dataset import lookup

    index = lookup(item_ids, aligned.get_column("item").to_numpy())
    titles = np.full(item_ids.shape[0], None, dtype=object)
    genres = np.full(item_ids.shape[0], None, dtype=object)
    titles[index] = aligned.get_column("title").to_list()
    genres[index] = aligned.get_column("genres").to_list()
    return titles, genres


def table_of(titles: Any, genres: Any, item_ids: np.ndarray) -> pl.DataFrame:
    """The inverse of `titles_array`: a table of the items that have a title."""
    have = np.flatnonzero(np.array([t is not None for t in titles], dtype=bool))
    return pl.DataFrame(
        {
            "item": item_ids[have],
            "title": pl.Series([titles[i] for i in have], dtype=pl.String),
            "genres": pl.Series([genres[i] for i in have], dtype=pl.String),
        }
    )


# ----------------------------------------------------------------------- readers
def _records(reader: Any, path: Path) -> Any:
    """(line number, fields) of a csv reader; a malformed record is a DataError."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"malformed CSV ({exc})", path=path, line=reader.line_num) from None
        yield reader.line_num, record


Row = tuple[int, str, str, str | None]  # line, item, title, genres


def _as_int(value: str) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**63) <= number < 2**63 else None


def _text(path: Path, encoding: str | None) -> str:
    """The file's text; encoding None tries UTF-8, then latin-1 (MovieLens' old files)."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read ({exc})", path=path) from None
    if encoding is not None:
        return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _lines(path: Path, encoding: str | None) -> list[tuple[int, str]]:
    return [
        (n, line.rstrip("\r"))
        for n, line in enumerate(_text(path, encoding).split("\n"), 1)
        if line.strip()
    ]


def _genre_names(path: Path) -> list[str]:
    genre_file = path.parent / "u.genre"
    if not genre_file.is_file():
        return list(ML100K_GENRES)
    names: dict[int, str] = {}
    for n, line in _lines(genre_file, "latin-1"):
        name, _, position = line.rpartition("|")
        if not name or _as_int(position) is None:
            raise DataError("expected NAME|POSITION", path=genre_file, line=n)
        names[int(position)] = name
    return [names.get(i, f"genre{i}") for i in range(max(names) + 1)] if names else []


def _read_u_item(path: Path) -> list[Row]:
    genres = _genre_names(path)
    rows: list[Row] = []
    for n, line in _lines(path, "latin-1"):
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) < 2 or not fields[0].strip() or (flags and len(flags) != len(genres)):
            raise DataError(
                f"expected id|title|release date|video date|url|{len(genres)} genre flags, "
                f"got {len(fields)} fields",
                path=path,
                line=n,
            )
        if any(f not in ("0", "1") for f in flags):
            raise DataError("genre flags must be 0 or 1", path=path, line=n)
        named = [g for g, f in zip(genres, flags, strict=False) if f == "1"]
        rows.append((n, fields[0].strip(), fields[1], "|".join(named) or None))
    return rows


def _read_movies_dat(path: Path) -> list[Row]:
    rows: list[Row] = []
    for n, line in _lines(path, None):
        fields = line.split("::")
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise DataError(
                f"expected id::title::genres, got {len(fields)} field(s)", path=path, line=n
            )
        genres = fields[2].strip() if len(fields) == 3 else ""
        rows.append((n, fields[0].strip(), fields[1], None if genres in NO_GENRES else genres))
    return rows


def _read_netflix_titles(path: Path) -> list[Row]:
    rows: list[Row] = []
    for n, line in _lines(path, "latin-1"):
        fields = line.split(",", 2)
        if len(fields) != 3 or _as_int(fields[0]) is None:
            raise DataError("expected MovieID,Year,Title", path=path, line=n)
        year = fields[1].strip()
        title = fields[2] if year in ("", "NULL") else f"{fields[2]} ({year})"
        rows.append((n, fields[0].strip(), title, None))
    return rows


def _parse_columns(columns: str | dict[str, str] | None, path: Path) -> dict[str, str]:
    if columns is None:
        return {"item": "item", "title": "title", "genres": "genres"}
    if isinstance(columns, str):
        mapping: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in columns.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not value:
                raise DataError(f"--item-columns entry {part!r} is not KEY=COLUMN")
            mapping[key.strip()] = value.strip()
    else:
        mapping = dict(columns)
    unknown = set(mapping) - {"item", "title", "genres"}
    if unknown:
        raise DataError(
            f"unknown item column key(s) {sorted(unknown)}; expected item, title[, genres]",
            path=path,
        )
    for key in ("item", "title"):
        if key not in mapping:
            raise DataError(f"item columns need {key}=COLUMN", path=path)
    return mapping


def _read_generic(path: Path, mapping: dict[str, str], optional: set[str]) -> list[Row]:
    text = _text(path, None)
    sample = text[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    positional = all(v.isdigit() for v in mapping.values())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    position: dict[str, int] = {}
    rows: list[Row] = []
    header_done = positional
    if positional:
        position = {k: int(v) for k, v in mapping.items()}
    for n, record in _records(reader, path):
        if not record or not any(f.strip() for f in record):
            continue
        if not header_done:
            header = [h.strip().lstrip("\ufeff") for h in record]
            for key, name in mapping.items():
                if name.isdigit():
                    position[key] = int(name)
                elif name in header:
                    position[key] = header.index(name)
                elif key in optional:
                    continue
                else:
                    raise DataError(
                        f"no column {name!r} for {key} (header: {', '.join(header)})",
                        path=path,
                        line=n,
                    )
            header_done = True
            continue
        need = max(position.values()) + 1
        if len(record) < need:
            raise DataError(
                f"expected at least {need} fields, got {len(record)}", path=path, line=n
            )
        item = record[position["item"]].strip()
        if not item:
            raise DataError("empty item id", path=path, line=n)
        genres = record[position["genres"]].strip() if "genres" in position else ""
        rows.append((n, item, record[position["title"]], None if genres in NO_GENRES else genres))
    return rows


__all__ = ["ITEM_FILES", "align", "find_item_file", "read_items", "table_of", "titles_array"]

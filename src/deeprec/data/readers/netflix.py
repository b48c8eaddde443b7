"""Netflix Prize files: `training_set/mv_*.txt` (one movie per file) and `combined_data_*.txt`.

Both layouts are the same text: a `MovieID:` line, then `CustomerID,Rating,YYYY-MM-DD` lines,
repeated. Files are batched into ~64 MB chunks of whole lines; per chunk the movie header lines
are found with one NumPy byte scan, cut out, and the rest is parsed by Polars with fixed types.
The movie id of each row is `np.repeat` of the header ids. Dates are UTC days -> epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from deeprec.data.readers._io import Chunk, first_true, iter_chunks, read_lines, strip_compression
from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER
from deeprec.errors import DataError

SCALE = (1.0, 5.0)
_FIELDS = ("CustomerID", "Rating", "Date")
_BODY_SCHEMA = {"u": pl.Int64, "r": pl.Float32, "d": pl.Date}
_SECONDS_PER_DAY = 86_400


def find_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their Netflix files (mv_*.txt preferred, else combined_data_*)."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for folder in (path / "training_set", path):
                found = sorted(p for p in folder.glob("mv_*.txt*") if p.is_file())
                if found:
                    break
            if not found:
                found = sorted(p for p in path.glob("combined_data_*.txt*") if p.is_file())
            if not found:
                raise DataError(
                    "no Netflix files found (expected training_set/mv_*.txt or "
                    "combined_data_*.txt)",
                    path=path,
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("input not found", path=path)
    return files


def read_netflix(
    files: Sequence[Path], *, progress: bool = False, scale: tuple[float, float] = SCALE
) -> pl.DataFrame:
    """Parse Netflix-format files into the canonical table (rows in file order)."""
    frames = [
        frame for frame in _iter_frames(files, progress=progress, scale=scale) if frame.height
    ]
    if not frames:
        raise DataError("no ratings found", path=files[0] if files else None)
    return pl.concat(frames, rechunk=False)


def _iter_frames(
    files: Sequence[Path], *, progress: bool, scale: tuple[float, float]
) -> Iterator[pl.DataFrame]:
    from tqdm import tqdm

    compressed = any(strip_compression(p) != p.name for p in files)
    total = None if compressed else sum(p.stat().st_size for p in files)
    carry: int | None = None
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="read netflix", disable=not progress
    ) as bar:
        for chunk in iter_chunks(files):
            frame, carry = _parse_chunk(chunk, carry, scale)
            bar.update(len(chunk.data))
            yield frame


def _parse_chunk(
    chunk: Chunk, carry: int | None, scale: tuple[float, float]
) -> tuple[pl.DataFrame, int | None]:
    data = chunk.data
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    colons = np.flatnonzero(arr == 58)
    header_lines = np.searchsorted(newlines, colons)  # chunk line index of each colon
    if header_lines.size > 1 and np.any(np.diff(header_lines) == 0):
        bad = int(header_lines[first_true(np.diff(header_lines) == 0)])
        _raise_at(chunk, bad, "more than one ':' on a line", "MovieID")
    line_starts = np.concatenate(([0], newlines[:-1] + 1))
    movie_ids = np.empty(header_lines.size, dtype=np.int64)
    for k, (line, colon) in enumerate(zip(header_lines.tolist(), colons.tolist(), strict=True)):
        start = int(line_starts[line])
        rest = data[colon + 1 : int(newlines[line])].strip()
        text = data[start:colon].strip()
        if rest or not text.isdigit():
            _raise_at(chunk, line, "expected a 'MovieID:' line", "MovieID")
        movie_ids[k] = int(text)
    # Each file must open with a movie header; a chunk may continue the previous chunk's movie.
    header_set = set(header_lines.tolist())
    for seg in chunk.segments:
        if seg.first_line == 1 and seg.start < newlines.size and seg.start not in header_set:
            _raise_at(chunk, seg.start, "file does not start with a 'MovieID:' line", "MovieID")
    n_lines = int(newlines.size)
    after = np.concatenate((header_lines[1:], [n_lines])).astype(np.int64)
    counts = after - (header_lines + 1)
    block_ids = movie_ids
    lead = int(header_lines[0]) if header_lines.size else n_lines
    if lead:  # rows that continue the movie of the previous chunk
        if carry is None:
            _raise_at(chunk, 0, "rating line before the first 'MovieID:' line", "MovieID")
        block_ids = np.concatenate(([carry], movie_ids))
        counts = np.concatenate(([lead], counts))
    items = np.repeat(block_ids, counts)
    # Body = the chunk without its header lines, parsed in one typed Polars call.
    pieces = [b"u,r,d\n"]
    prev = 0
    for line in header_lines.tolist():
        pieces.append(data[prev : int(line_starts[line])])
        prev = int(newlines[line]) + 1
    pieces.append(data[prev:])
    body = b"".join(pieces)
    header_adj = header_lines - np.arange(header_lines.size)

    def to_chunk_line(row: int) -> int:
        return row + int(np.searchsorted(header_adj, row, side="right"))

    try:
        frame = pl.read_csv(body, has_header=True, schema=_BODY_SCHEMA, quote_char=None)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        _diagnose(chunk, body[6:], to_chunk_line)
        raise DataError(f"cannot parse ({exc})", path=chunk.segments[0].path) from exc
    if frame.height != items.size:
        _diagnose(chunk, body[6:], to_chunk_line)
        raise DataError("line count mismatch while parsing", path=chunk.segments[0].path)
    nulls = frame.select(pl.any_horizontal(pl.all().is_null())).to_series()
    row = first_true(nulls)
    if row is not None:
        _diagnose(chunk, body[6:], to_chunk_line)
        _raise_at(chunk, to_chunk_line(row), "expected CustomerID,Rating,YYYY-MM-DD", None)
    ratings = frame.get_column("r")
    bad = (ratings < scale[0]) | (ratings > scale[1])
    row = first_true(bad)
    if row is not None:
        _raise_at(
            chunk,
            to_chunk_line(row),
            f"rating {ratings[row]:g} is outside the scale {scale[0]:g}..{scale[1]:g}",
            "Rating",
        )
    out = pl.DataFrame(
        {
            USER: frame.get_column("u"),
            ITEM: pl.Series(ITEM, items, dtype=pl.Int64),
            RATING: ratings,
            TIMESTAMP: frame.get_column("d").cast(pl.Int64) * _SECONDS_PER_DAY,
        }
    )
    new_carry = int(block_ids[-1]) if block_ids.size else carry
    return out, new_carry


def _diagnose(chunk: Chunk, body: bytes, to_chunk_line) -> None:
    """Find the first bad rating line of a chunk body and raise a DataError naming it."""
    lines = read_lines(body)
    parts = lines.str.split(",")
    checks = [
        (
            parts.list.len() != 3,
            "expected 3 comma-separated fields CustomerID,Rating,YYYY-MM-DD",
            None,
        ),
        (
            parts.list.get(0, null_on_oob=True)
            .str.strip_chars()
            .cast(pl.Int64, strict=False)
            .is_null(),
            "CustomerID is not an integer",
            _FIELDS[0],
        ),
        (
            parts.list.get(1, null_on_oob=True)
            .str.strip_chars()
            .cast(pl.Float32, strict=False)
            .is_null(),
            "rating is not a number",
            _FIELDS[1],
        ),
        (
            parts.list.get(2, null_on_oob=True)
            .str.strip_chars()
            .str.to_date("%Y-%m-%d", strict=False)
            .is_null(),
            "date is not YYYY-MM-DD",
            _FIELDS[2],
        ),
    ]
    best: tuple[int, str, str | None] | None = None
    for mask, message, field in checks:
        row = first_true(mask)
        if row is not None and (best is None or row < best[0]):
            best = (row, message, field)
    if best is not None:
        row, message, field = best
        text = lines[row]
        _raise_at(chunk, to_chunk_line(row), f"{message}: {text[:80]!r}", field)


def _raise_at(chunk: Chunk, chunk_line: int, message: str, field: str | None) -> None:
    path, line = chunk.locate(int(chunk_line))
    raise DataError(message, path=path, line=line, field=field)


def is_netflix_name(path: Path) -> bool:
    name = strip_compression(path)
    return name.startswith(("mv_", "combined_data_"))

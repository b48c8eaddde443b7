"""Delimited text (CSV, TSV, `::`) into the canonical table, in one Polars call per file.

The fast path reads with fixed column types. If that fails, the file is re-read as text and
converted column by column so the error names the first bad line and field.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deeprec.data.readers._io import first_true, read_lines
from deeprec.data.readers.convert import Where, canonical
from deeprec.data.table import ITEM, RATING, TIMESTAMP, USER
from deeprec.errors import DataError

DOUBLE_COLON = "\x1e"  # `::` is rewritten to this single byte (Polars needs one-byte separators)


def _split_line(line: str, separator: str) -> list[str]:
    return [field.strip().strip('"') for field in line.rstrip("\r").split(separator)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff(data: bytes, path: Path) -> tuple[str, bool, list[str], bytes]:
    """(separator, has_header, first-line fields, data) with `::` rewritten to one byte."""
    if b"\x00" in data[:8192]:  # text never holds NUL bytes; do not quote the garbage
        raise DataError(
            "looks like a binary file (NUL bytes), not delimited text; Parquet needs "
            "--format parquet or a .parquet name",
            path=path,
        )
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).decode("utf-8", errors="replace").rstrip("\r")
    if not first.strip():
        raise DataError("the first line is empty", path=path, line=1)
    if "::" in first:
        data = data.replace(b"::", DOUBLE_COLON.encode())
        first = first.replace("::", DOUBLE_COLON)
        separator = DOUBLE_COLON
    elif "\t" in first:
        separator = "\t"
    elif "," in first:
        separator = ","
    elif ";" in first:
        separator = ";"
    elif " " in first.strip():
        separator = " "
    else:
        raise DataError("cannot tell the column separator of the first line", path=path, line=1)
    fields = _split_line(first, separator)
    has_header = not all(_is_number(f) for f in fields[:3])
    return separator, has_header, fields, data


def read_delimited(
    data: bytes,
    path: Path,
    *,
    separator: str,
    has_header: bool,
    mapping: dict[str, str | int],
    scale: tuple[float, float] | None,
    typed: bool,
    quote_char: str | None = None,
) -> pl.DataFrame:
    """Parse `data` and convert the mapped columns (names, or 0-based positions) to canonical."""
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).decode("utf-8", errors="replace")
    fields = _split_line(first, separator)
    if has_header:
        names = fields
        body = b"" if end < 0 else data[end + 1 :]
        line_offset = 2
    else:
        names = [str(i) for i in range(len(fields))]
        body = data
        line_offset = 1
    positions = _resolve(mapping, names, path)
    safe = [f"c{i}" for i in range(len(names))]
    header = separator.join(safe).encode() + b"\n"
    where = Where(path, line_offset)
    own = {key: safe[pos] for key, pos in positions.items()}
    # Errors name the file's own column (header name), else the canonical name.
    shown = {key: (names[pos] if has_header else key) for key, pos in positions.items()}
    if len(set(shown.values())) < len(shown):
        shown = {key: f"{key} (column {pos + 1})" for key, pos in positions.items()}
    rename = {own[key]: shown[key] for key in own}
    display = {key: shown[key] for key in own}
    if typed:
        schema = {name: pl.String for name in safe}
        schema[own[USER]] = pl.Int64
        schema[own[ITEM]] = pl.Int64
        schema[own[RATING]] = pl.Float32
        if TIMESTAMP in own:
            schema[own[TIMESTAMP]] = pl.Int64
        try:
            frame = _read(header + body, separator, schema, quote_char)
            nulls = frame.select([pl.col(c).is_null() for c in own.values()])
            if not nulls.select(pl.any_horizontal(pl.all())).to_series().any():
                return canonical(frame.rename(rename), display, where, scale)
        except pl.exceptions.PolarsError:
            pass
    try:
        frame = _read(header + body, separator, {name: pl.String for name in safe}, quote_char)
    except pl.exceptions.PolarsError as exc:
        _raise_not_utf8(body, path, line_offset)  # reliability (issue 8): found by Hypothesis
        _raise_ragged(body, separator, len(names), path, line_offset)
        raise DataError(f"cannot parse ({str(exc).splitlines()[0]})", path=path) from exc
    if frame.height == 0:
        raise DataError("no ratings found", path=path)
    return canonical(frame.rename(rename), display, where, scale)


def _read(data: bytes, separator: str, schema: dict, quote_char: str | None) -> pl.DataFrame:
    return pl.read_csv(
        data,
        has_header=True,
        separator=separator,
        schema=schema,
        quote_char=quote_char,
    )


def _resolve(mapping: dict[str, str | int], names: list[str], path: Path) -> dict[str, int]:
    """Column positions of the canonical fields; names match case-insensitively."""
    lowered = [n.lower() for n in names]
    out: dict[str, int] = {}
    for key, col in mapping.items():
        if isinstance(col, int) or (isinstance(col, str) and col.isdigit() and col not in names):
            pos = int(col)
            if pos >= len(names):
                raise DataError(
                    f"column position {pos} is out of range (the file has {len(names)} columns)",
                    path=path,
                    field=key,
                )
        elif col in names:
            pos = names.index(col)
        elif col.lower() in lowered:
            pos = lowered.index(col.lower())
        else:
            raise DataError(f"no column {col!r}; the file has {names}", path=path, field=key)
        out[key] = pos
    return out


def _raise_not_utf8(body: bytes, path: Path, line_offset: int) -> None:
    """Name the line of the first byte that is not UTF-8 (Polars only says 'invalid utf-8')."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + line_offset
        raise DataError(
            f"not UTF-8 text (byte {body[exc.start]:#04x}); save the file as UTF-8",
            path=path,
            line=line,
        ) from None


def _raise_ragged(body: bytes, separator: str, n_fields: int, path: Path, line_offset: int) -> None:
    lines = read_lines(body)
    counts = lines.str.count_matches(separator, literal=True) + 1
    row = first_true(counts != n_fields)
    if row is not None:
        raise DataError(
            f"expected {n_fields} fields, found {counts[row]}: {lines[row][:80]!r}",
            path=path,
            line=row + line_offset,
        )

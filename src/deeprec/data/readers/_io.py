"""Byte-level helpers shared by the readers: (de)compression, checksums, chunking, line numbers.

Readers parse whole chunks with Polars (vectorised). Only when a chunk fails do they look
closer, to name the first bad line; the happy path never loops over lines in Python.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from deeprec.errors import DataError

COMPRESSED_SUFFIXES = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
CHUNK_BYTES = 64 * 1024 * 1024
# A byte that never occurs in rating files: reading with it as separator gives one column of lines.
LINE_SEPARATOR = "\x1f"


def strip_compression(path: Path) -> str:
    """File name without a .gz/.xz/.bz2 suffix (used to recognise the layout)."""
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_bytes(path: Path) -> bytes:
    """The whole file, decompressed when it ends in .gz, .xz or .bz2."""
    opener = COMPRESSED_SUFFIXES.get(path.suffix)
    try:
        if opener is None:
            return path.read_bytes()
        with opener(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise DataError("input file not found", path=path) from exc
    except IsADirectoryError as exc:
        raise DataError("expected a file, got a directory", path=path) from exc
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"cannot read ({exc})", path=path) from exc


def sha256_file(path: Path) -> str:
    """Checksum of the file as stored (compressed bytes for compressed files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Piece:
    """Whole lines of one file: `data` starts at the file's 1-based line `first_line`."""

    path: Path
    data: bytes | memoryview
    first_line: int


def _ensure_newline(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


def iter_chunks(paths: Iterable[Path], chunk_bytes: int | None = None) -> Iterator[list[Piece]]:
    """Group files into chunks of whole lines, about `chunk_bytes` each (no copying).

    Small files (Netflix mv_*.txt) are batched together; big files are cut at line ends.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    pieces: list[Piece] = []
    size = 0
    for path in paths:
        data = _ensure_newline(read_bytes(path))
        view = memoryview(data)
        offset = 0
        line_no = 1
        while offset < len(data):
            room = max(chunk_bytes - size, 1)
            if len(data) - offset <= room:
                end = len(data)
            else:
                end = data.rfind(b"\n", offset, offset + room) + 1
                if end <= offset:  # one line longer than the room left: take up to its end
                    end = data.find(b"\n", offset + room) + 1 or len(data)
            whole = offset == 0 and end == len(data)
            pieces.append(Piece(path, data if whole else view[offset:end], line_no))
            size += end - offset
            if end < len(data):
                line_no += data.count(b"\n", offset, end)
            offset = end
            if size >= chunk_bytes:
                yield pieces
                pieces, size = [], 0
    if pieces:
        yield pieces


def read_lines(data: bytes) -> pl.Series:
    """Every line of `data` as a String Series (one row per line, blank lines included)."""
    if not data:
        return pl.Series("line", [], dtype=pl.String)
    frame = pl.read_csv(
        data,
        has_header=False,
        separator=LINE_SEPARATOR,
        quote_char=None,
        schema={"line": pl.String},
        empty_string_is_null=False,
    )
    lines = frame.get_column("line").str.strip_suffix("\r")
    return lines


def first_true(mask: pl.Series | np.ndarray) -> int | None:
    """Index of the first True (nulls count as False), or None."""
    if isinstance(mask, pl.Series):
        idx = mask.fill_null(False).arg_true()
        return int(idx[0]) if idx.len() else None
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None

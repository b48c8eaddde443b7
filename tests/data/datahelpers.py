"""Helpers for the data tests: write small Netflix-format trees and hash directories."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path


def write_netflix_tree(root: Path, rows: list[tuple[int, int, int, str]]) -> Path:
    """rows = (movie, user, rating, 'YYYY-MM-DD'); writes root/training_set/mv_*.txt."""
    folder = root / "training_set"
    folder.mkdir(parents=True, exist_ok=True)
    by_movie: dict[int, list[str]] = defaultdict(list)
    for movie, user, rating, date in rows:
        by_movie[movie].append(f"{user},{rating},{date}\n")
    for movie, lines in by_movie.items():
        (folder / f"mv_{movie:07d}.txt").write_text(f"{movie}:\n" + "".join(lines))
    return root


def tree_digest(path: Path) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file below `path`, sorted."""
    return [
        (p.relative_to(path).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]

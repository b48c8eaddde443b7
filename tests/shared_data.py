"""Where the real datasets live (../shared/data), and skipping cleanly when they are absent.

A plain module (not conftest) so test files can import it unambiguously:
`from shared_data import shared_file`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "DEEPREC_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


def shared_file(*parts: str) -> Path:
    """Path of a file in ../shared/data, skipping the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path

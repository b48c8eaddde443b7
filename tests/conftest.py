"""Fixtures shared by every test folder (helpers to import live in shared_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not available: {SHARED_DATA}")
    return SHARED_DATA

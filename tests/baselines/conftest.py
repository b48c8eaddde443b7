"""Synthetic rating fixtures for the baseline tests, generated in the tests (no files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def tiny_ratings() -> pd.DataFrame:
    """A small 0..4 scale set with many 0-valued ratings and string item ids."""
    rng = np.random.default_rng(7)
    n_users, n_items = 30, 20
    taste = rng.normal(0, 1, n_users)[:, None] + rng.normal(0, 1, n_items)[None, :]
    observed = rng.random((n_users, n_items)) < 0.5
    users, items = np.nonzero(observed)
    ratings = np.clip(np.round(2 + taste[users, items]), 0, 4)
    return pd.DataFrame(
        {"user": users * 3 + 10, "item": [f"i{j}" for j in items], "rating": ratings}
    )

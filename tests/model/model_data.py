"""Small synthetic rating sets for the model tests (generated, never real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deeprec.data.dataset import PreparedDataset


def synthetic_frame(
    n_users: int = 57, n_items: int = 31, density: float = 0.35, seed: int = 0
) -> pd.DataFrame:
    """Low-rank ratings on a 1..5 scale with raw ids that are not 0..n-1."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    full = 3.0 + (u @ v.T) / 1.5 + rng.normal(scale=0.3, size=(n_users, n_items))
    full = np.clip(np.rint(full), 1, 5)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user rates
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item is rated
    users, items = np.nonzero(mask)
    return pd.DataFrame(
        {
            "user": users * 7 + 100,
            "item": items * 3 + 5,
            "rating": full[users, items].astype(np.float32),
        }
    )


def split_frame(frame: pd.DataFrame, seed: int = 1) -> PreparedDataset:
    rng = np.random.default_rng(seed)
    r = rng.random(len(frame))
    return PreparedDataset.from_tables(
        frame[r < 0.7], frame[(r >= 0.7) & (r < 0.85)], frame[r >= 0.85]
    )


def shared_file(*parts: str):
    """A file of ../shared/data (or $DEEPREC_SHARED_DATA), skipping the test when absent.

    The same rule as tests/conftest.py's `shared_file` (imported here by path-free name
    because two conftest modules cannot both be imported as `conftest`).
    """
    import os
    from pathlib import Path

    root = Path(
        os.environ.get(
            "DEEPREC_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
        )
    ).resolve()
    path = root.joinpath(*parts)
    if not path.exists():
        import pytest

        pytest.skip(f"real data not available: {path}")
    return path

"""A tiny synthetic prepared dataset (low-rank ratings) for the experiment recipes.

This file shadows ``tests/conftest.py`` for ``from conftest import ...`` in this folder, so
it re-exports the root helpers (``shared_file``) that test modules here import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deeprec.data.dataset import PreparedDataset

_spec = importlib.util.spec_from_file_location(
    "_deeprec_tests_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
shared_file = _root.shared_file
SHARED_DATA = _root.SHARED_DATA


def make_synthetic(n_users: int = 48, n_items: int = 30, density: float = 0.4, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    scores = u @ v.T + rng.normal(scale=0.3, size=(n_users, n_items))
    ratings = np.clip(np.round(3 + scores), 1, 5)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    frame = pd.DataFrame(
        {
            "user": users + 1,
            "item": items + 101,
            "rating": ratings[users, items].astype(np.float32),
            "timestamp": np.arange(users.shape[0], dtype=np.int64),
        }
    )
    part = rng.random(len(frame))
    return PreparedDataset.from_tables(
        frame[part < 0.8], frame[(part >= 0.8) & (part < 0.9)], frame[part >= 0.9]
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny"
    make_synthetic().save(path)
    return path

"""Synthetic ratings from a known low-rank + bias model (helpers for the baseline tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def low_rank_ratings(
    n_users: int = 120,
    n_items: int = 80,
    rank: int = 3,
    density: float = 0.3,
    noise: float = 0.3,
    seed: int = 0,
    offset: float = 3.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """mu + b_u + b_i + p_u.q_i + N(0, noise^2), observed at random; returns (train, test)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.6, (n_users, rank))
    q = rng.normal(0, 0.6, (n_items, rank))
    b_u = rng.normal(0, 0.3, n_users)
    b_i = rng.normal(0, 0.3, n_items)
    full = offset + b_u[:, None] + b_i[None, :] + p @ q.T
    observed = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(observed)
    ratings = full[users, items] + rng.normal(0, noise, users.shape[0])
    frame = pd.DataFrame({"user": users + 1, "item": items + 1, "rating": ratings})
    is_test = rng.random(len(frame)) < 0.2
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def tiny_frame() -> pd.DataFrame:
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


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Run torch single-threaded (import this autouse fixture into a test module).

    On the shared 2-core CI machine a 2-thread pool made small AutoRec steps 5-8x slower
    under load (measured); results do not depend on it.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

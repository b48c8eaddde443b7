"""Two fresh fits with the same seed and thread count give bit-identical weights with the
`compute: fast` defaults (strategies chosen by the cost model, not by timings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.estimator import DeepRec


def ratings(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_users, n_items = 120, 300  # sparse enough that several strategies compete
    users = np.repeat(np.arange(n_users), 15)
    items = np.concatenate([rng.choice(n_items, 15, replace=False) for _ in range(n_users)])
    values = rng.integers(1, 6, users.shape[0]).astype(np.float32)
    return pd.DataFrame({"user": users, "item": items, "rating": values})


@pytest.mark.parametrize("refeed", [0, 1])
def test_two_fresh_fits_give_identical_weights(refeed: int) -> None:
    frame = ratings()
    settings = dict(
        hidden=[24, 12], epochs=3, batch_size=16, dropout=0.3, refeed_steps=refeed, seed=5,
        threads=1,
    )  # fmt: skip
    first = DeepRec(**settings).fit(frame)
    second = DeepRec(**settings).fit(frame)
    assert first.compute == "fast" and first.output_strategy == "auto"
    a, b = first.module_.state_dict(), second.module_.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

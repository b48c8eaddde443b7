"""Dynamic micro-batching: concurrent calls share one forward pass and get their own rows."""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from deeprec.serve.batching import ForwardBatcher


def test_concurrent_calls_are_one_batch_with_the_right_rows(fitted):
    batcher = ForwardBatcher.for_model(fitted, max_batch=8)
    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(20):  # more than max_batch: split into 8 + 8 + 4
        index = np.sort(rng.choice(fitted.n_items, size=6, replace=False))
        inputs.append((index, rng.integers(1, 6, size=6).astype(np.float64)))

    async def all_at_once():
        return await asyncio.gather(*(batcher(i, v) for i, v in inputs))

    outputs = asyncio.run(all_at_once())
    assert batcher.rows == 20 and batcher.batches == 3
    for (index, values), out in zip(inputs, outputs, strict=True):
        x = torch.zeros(1, fitted.n_items)
        x[0, torch.from_numpy(index)] = torch.from_numpy(values).float()
        with torch.inference_mode():
            expected = fitted.module_(x)[0].numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_no_batcher_for_item_based_or_moduleless_models(fitted):
    class Plain:
        orientation = "user"

    assert ForwardBatcher.for_model(Plain()) is None
    fitted_item = type("ItemBased", (), {"module_": fitted.module_, "orientation": "item"})()
    assert ForwardBatcher.for_model(fitted_item) is None

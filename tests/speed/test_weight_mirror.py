"""bf16 weight copies: re-cast after each update, only when read, always up to date."""

from __future__ import annotations

import numpy as np
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.kernels.precision import WeightMirror
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep


def test_a_copy_is_cast_when_read_after_a_change_and_not_before():
    master = torch.randn(6, 4)
    mirror = WeightMirror([master], torch.bfloat16)
    assert mirror.casts == 0
    assert torch.equal(mirror.get(0), master.to(torch.bfloat16))
    assert mirror.get(0) is mirror.copies[0] and mirror.casts == 1  # second read: no cast
    master.add_(1.0)
    mirror.refresh()
    assert mirror.casts == 1
    assert torch.equal(mirror.get(0), master.to(torch.bfloat16))
    assert mirror.casts == 2


def test_bf16_step_never_casts_the_unused_first_layer_copy():
    rng = np.random.default_rng(0)
    mask = rng.random((32, 50)) < 0.3
    mask[:, 0] = True
    rows, cols = np.nonzero(mask)
    values = rng.integers(1, 6, size=rows.shape[0]).astype(np.float32)
    batch = row_batch(CSRMatrix.from_coo(rows, cols, values, (32, 50)), np.arange(32)).prepare()
    torch.manual_seed(0)
    model = AutoEncoder(50, [16, 8], activation="selu")
    step = FastStep(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        precision="bf16",
        input_strategy="sparse",
        output_strategy="dense",
    )
    net = step.net
    first = net._mirror_index[id(net.first)]
    out_layer = net._mirror_index[id(net.layers[-1].param)]
    for _ in range(3):
        step(batch)
    assert net._mirror.stale[first]  # the sparse first layer reads the fp32 master only
    # the output layer's copy was re-cast after each update that preceded a read
    assert torch.equal(
        net._mirror.get(out_layer), net.storage(net.layers[-1].param).to(torch.bfloat16)
    )

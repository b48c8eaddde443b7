"""Opt-in lazy updates (config `lazy_updates`): momentum SGD on only the rows of the item-wide
weight matrices (and output biases) that a batch touched.

This CHANGES THE MATH, which is why it is off by default: with dense momentum SGD every row
moves on every step (its momentum decays, weight decay pulls it), here a row not in the batch
keeps its weight and momentum until a batch rates its item again, as in TensorFlow's
LazyAdam or sparse embedding optimizers. In exchange the sparse pass never builds the dense
(items x width) gradients and the update reads and writes only the touched rows. Its effect
on accuracy and speed is measured in docs/results/train_speed.md (ML-1M subset) and
docs/results/netflix_scale_epoch.md (Netflix-scale synthetic data).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def row_sgd(
    w: torch.Tensor,
    m: torch.Tensor,
    rows: torch.Tensor,
    g_rows: torch.Tensor,
    lr: float,
    mu: float,
    wd: float,
    w_low: torch.Tensor | None = None,
) -> None:
    """torch.optim.SGD's momentum update (coupled weight decay, no dampening) on w[rows] and
    m[rows] only; `w_low[rows]` (a low-precision copy) is rewritten to match."""
    w_rows = w.index_select(0, rows)
    d = g_rows if wd == 0 else g_rows.add(w_rows, alpha=wd)
    m_rows = m.index_select(0, rows).mul_(mu).add_(d)
    m.index_copy_(0, rows, m_rows)
    w_rows.add_(m_rows, alpha=-lr)
    w.index_copy_(0, rows, w_rows)
    if w_low is not None:
        w_low.index_copy_(0, rows, w_rows.to(w_low.dtype))

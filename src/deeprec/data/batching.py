"""Mini-batches of rating rows from a CSR matrix, built with vectorised NumPy/PyTorch.

A batch keeps its ratings as sparse triplets in row order (with CSR row offsets, which is what
`embedding_bag` wants for X @ W) and, on demand, in column order (for X^T @ G, the weight
gradient of a sparse layer). Batches can be built ahead of use on a background thread
(`prefetch`), so batch building overlaps the matmuls of the previous step where a core is
free for it (`prefetch_depth`).

On the CPU every index structure is computed with NumPy, not torch: a torch kernel called
on the prefetch thread starts a second OpenMP thread team there, whose spinning workers
took cores from the training step's matmuls (a Netflix-scale bf16 step measured 36-44 ms
with batches built in line, 42-64 ms prefetched by torch ops).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace

import numpy as np
import torch

from deeprec.data.sparse import CSRMatrix


@dataclass
class ColumnOrder:
    """The batch's ratings sorted by column: bags of ratings per column for X^T @ G."""

    perm: torch.Tensor  # int64 (nnz,): rating order sorted by column (stable)
    local: torch.Tensor  # int64 (nnz,): row within the batch of each sorted rating
    offsets: torch.Tensor  # int64 (n_cols + 1,): CSC column pointers
    values: torch.Tensor  # (nnz,) values in column order


@dataclass
class RowBatch:
    """Rows of the rating matrix: sparse triplets plus, on demand, dense input and mask."""

    rows: np.ndarray  # row indices (users for user-based, items for item-based)
    local: torch.Tensor  # int64 (nnz,) position of each rating's row within the batch
    cols: torch.Tensor  # int64 (nnz,) column of each rating
    values: torch.Tensor  # float32 (nnz,)
    n_cols: int
    offsets: torch.Tensor | None = None  # int64 (size + 1,) row pointers into cols/values
    _by_col: ColumnOrder | None = field(default=None, repr=False)
    _union: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _flat: torch.Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def to(self, device: torch.device | str) -> RowBatch:
        """The batch with every tensor field (also cached index structures) on `device`;
        itself when already there."""
        device = torch.device(device)
        if self.values.device == device:
            return self
        moved = {f.name: _to_device(getattr(self, f.name), device) for f in fields(self) if f.init}
        return replace(self, **moved)

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    def dense(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (batch, n_cols) ratings and 0/1 mask (a 0 rating keeps mask 1), built on the
        device the batch's tensors live on."""
        device = self.values.device
        x = torch.zeros(self.size, self.n_cols, dtype=dtype, device=device)
        mask = torch.zeros(self.size, self.n_cols, dtype=dtype, device=device)
        x[self.local, self.cols] = self.values.to(dtype)
        mask[self.local, self.cols] = 1.0
        return x, mask

    def row_offsets(self) -> torch.Tensor:
        if self.offsets is None:  # computed on the CPU (NumPy), moved back if needed
            offsets = np.zeros(self.size + 1, dtype=np.int64)
            counts = np.bincount(self.local.cpu().numpy(), minlength=self.size)
            np.cumsum(counts, out=offsets[1:])
            self.offsets = torch.from_numpy(offsets).to(self.local.device)
        return self.offsets

    def by_column(self) -> ColumnOrder:
        """Ratings grouped by column (computed once, vectorised)."""
        if self._by_col is None:
            device = self.cols.device  # computed on the CPU (NumPy), moved back if needed
            cols = self.cols.cpu().numpy()
            # a stable sort of uint16 keys is a radix sort: ~15x faster than on int64
            keys = cols.astype(np.uint16) if self.n_cols <= 1 << 16 else cols
            perm = np.argsort(keys, kind="stable")
            counts = np.bincount(cols, minlength=self.n_cols)
            offsets = np.zeros(self.n_cols + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            perm = perm.astype(np.int64, copy=False)
            if device.type == "cpu":  # NumPy gathers: no torch thread team (see module doc)
                local = torch.from_numpy(self.local.numpy()[perm])
                values = torch.from_numpy(self.values.numpy()[perm])
                perm_t = torch.from_numpy(perm)
            else:
                perm_t = torch.from_numpy(perm).to(device)
                local, values = self.local[perm_t], self.values[perm_t]
            self._by_col = ColumnOrder(
                perm=perm_t,
                local=local,
                offsets=torch.from_numpy(offsets).to(device),
                values=values,
            )
        return self._by_col

    def column_union(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted distinct columns U, position in U of every rating's column)."""
        if self._union is None:  # computed on the CPU (NumPy), moved back if needed
            device = self.cols.device
            union = np.flatnonzero(np.diff(self.by_column().offsets.cpu().numpy()))
            position = np.empty(self.n_cols, dtype=np.int64)
            position[union] = np.arange(union.shape[0], dtype=np.int64)
            self._union = (
                torch.from_numpy(union).to(device),
                torch.from_numpy(position[self.cols.cpu().numpy()]).to(device),
            )
        return self._union

    def flat_positions(self) -> torch.Tensor:
        """Each rating's position in the row-major (batch, n_cols) matrix: local * n_cols +
        col. One flat `index_select` of the observed outputs reads them ~3x as fast as
        indexing with the (local, cols) pair."""
        if self._flat is None:  # computed on the CPU (NumPy), moved back if needed
            local, cols = self.local.cpu().numpy(), self.cols.cpu().numpy()
            flat = local * np.int64(self.n_cols) + cols
            self._flat = torch.from_numpy(flat).to(self.cols.device)
        return self._flat

    def prepare(self, *, by_column: bool = True) -> RowBatch:
        """Compute the derived index structures now (on the prefetch thread), not in the step."""
        self.row_offsets()
        self.flat_positions()
        if by_column:
            self.by_column()
            self.column_union()
        return self


def _to_device(value, device: torch.device):
    """Tensors (also inside tuples and dataclasses) moved to `device`; anything else as is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(
            value,
            **{f.name: _to_device(getattr(value, f.name), device) for f in fields(value) if f.init},
        )
    return value


def row_batch(matrix: CSRMatrix, rows: np.ndarray) -> RowBatch:
    """The given rows as one batch, gathered from the CSR arrays without Python loops."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    local = np.repeat(np.arange(rows.shape[0], dtype=np.int64), lengths)
    flat = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return RowBatch(
        rows=rows,
        local=torch.from_numpy(local),
        cols=torch.from_numpy(matrix.indices[flat].astype(np.int64)),
        values=torch.from_numpy(np.ascontiguousarray(matrix.values[flat], dtype=np.float32)),
        n_cols=matrix.shape[1],
        offsets=torch.from_numpy(offsets),
    )


def epoch_order(rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled row order of one epoch: a function of (seed, epoch) only, so a resumed
    run replays exactly the same order."""
    rng = np.random.default_rng([seed, epoch])
    return rows[rng.permutation(rows.shape[0])]


def iter_row_batches(
    matrix: CSRMatrix,
    order: np.ndarray,
    batch_size: int,
    start: int = 0,
    *,
    prepare: bool = False,
) -> Iterator[RowBatch]:
    """Every row in `order`, the last partial batch included (the reference code drops it)."""
    for begin in range(start * batch_size, order.shape[0], batch_size):
        batch = row_batch(matrix, order[begin : begin + batch_size])
        yield batch.prepare() if prepare else batch


_DONE = object()


def prefetch_depth(device: torch.device | str = "cpu") -> int:
    """How many batches a training epoch builds ahead on a thread: 2 where the builder can
    run beside the step (a GPU step leaves the CPU waiting; or a core is free of torch's
    threads), else 0, built in line. When torch's threads fill every core the builder only
    competes with them: on the 2-core development machine a prefetched epoch was 0-4%
    slower than building in line (benchmarks/batch_prefetch.py)."""
    if torch.device(device).type != "cpu":
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 if (cores or 1) > torch.get_num_threads() else 0


def prefetch(items: Iterable[RowBatch], depth: int = 2) -> Iterator[RowBatch]:
    """Iterate `items` with up to `depth` of them built ahead on a background thread.

    NumPy and PyTorch release the GIL in their kernels, so building the next batch overlaps
    the current step. Exceptions in the builder are re-raised in the consumer; closing the
    generator early stops the builder.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # surfaced in the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="deeprec-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)

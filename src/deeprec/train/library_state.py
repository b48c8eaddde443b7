"""Process-wide torch state that training needs, set for the call and restored after it.

A library call must not change its caller's process: `fit` used to leave torch's thread
count at the config's `threads` and reseed the global generator, which changed the results
(and float rounding) of whatever ran next in the same process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def library_state(threads: int, seed: int) -> Iterator[None]:
    """Seed torch's generator with `seed` and use `threads` intra-op threads (0: leave as
    is) inside the block; on exit the caller's generator state and thread count return."""
    before = torch.get_num_threads()
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

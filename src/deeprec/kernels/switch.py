"""Which kernels may run: the one switch every kernel in this package consults.

Each kernel has a plain PyTorch fallback that gives the same values (bit for bit where the
kernel's docstring says so, else within fp32 rounding). `disabled()` forces the fallbacks,
for tests of both paths and for anyone who suspects a kernel; `deeprec.kernels.status()`
says which kernels are active on this machine. The switch is per process and only changes while a
`disabled()` block runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# name -> what runs when it is active (all CPU unless said; each falls back to torch ops)
KERNELS = {
    "onednn_linear": "fp32 products through torch.ops.mkldnn._linear_pointwise (private op)",
    "gather_dot": "AVX-512 loop (else torch.compile) for the observed-entry output layer",
    "mirrored_sgd": "torch.compile'd SGD update that also writes the bf16 weight copies",
    "refeed_loss": "torch.compile'd re-feed loss gradient, bias gradient and cast",
}

_lock = threading.Lock()
_off: dict[str, int] = {}  # name -> depth of disabled() blocks switching it off


def enabled(name: str) -> bool:
    """Whether kernel `name` may run (its module still checks it applies and builds)."""
    return _off.get(name, 0) == 0


@contextmanager
def disabled(*names: str) -> Iterator[None]:
    """Within the block, the named kernels (all if none are named) run their fallbacks."""
    unknown = sorted(set(names) - set(KERNELS))
    if unknown:
        raise ValueError(f"unknown kernel(s) {unknown}; known: {sorted(KERNELS)}")
    chosen = names or tuple(KERNELS)
    with _lock:
        for name in chosen:
            _off[name] = _off.get(name, 0) + 1
    try:
        yield
    finally:
        with _lock:
            for name in chosen:
                _off[name] -= 1

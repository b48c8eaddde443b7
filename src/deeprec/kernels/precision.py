"""Low-precision weight mirrors: bf16 copies of fp32 master weights, refreshed once per update.

Autocast re-casts every weight on every forward (and again for every re-feed pass). Here each
weight is cast once, right after the optimizer step that changed it, into a persistent bf16
buffer; the matmuls read the bf16 copy, the optimizer keeps updating fp32 masters.
"""

from __future__ import annotations

import torch
from torch.profiler import record_function

LOW_PRECISION = {"fp32": None, "bf16": torch.bfloat16}


def low_precision_dtype(precision: str) -> torch.dtype | None:
    """None for full precision, else the matmul dtype."""
    return LOW_PRECISION[precision]


def bf16_matmul_supported() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AMX or AVX-512 BF16); else bf16 is slow."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - older torch
        return True
    if capability not in ("AVX512", "AMX"):  # AVX2-only CPUs emulate bf16 dot products
        return False
    try:
        flags = open("/proc/cpuinfo").read()  # noqa: SIM115 - one read, Linux only
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


class WeightMirror:
    """Persistent low-precision copies of a set of contiguous fp32 tensors, cast lazily.

    `refresh()` (called after every optimizer step) only marks the copies stale; a copy is
    re-cast when it is next read. A copy nobody reads costs nothing: with a sparse first
    layer the bf16 copy of the 17,768 x 512 input weight is never used, and re-casting it
    after every update was ~4 ms of a ~50 ms Netflix-scale bf16 step.
    """

    def __init__(self, masters: list[torch.Tensor], dtype: torch.dtype) -> None:
        self.masters = masters
        self.copies = [torch.empty_like(m, dtype=dtype) for m in masters]
        self.stale = [True] * len(masters)
        self.read = [False] * len(masters)  # whether a copy was ever read
        self.casts = 0  # copies re-cast so far (for tests and benchmarks)

    def refresh(self) -> None:
        """The masters changed: every copy is re-cast before its next use."""
        self.stale = [True] * len(self.masters)

    @torch.no_grad()
    def get(self, index: int) -> torch.Tensor:
        """The up-to-date low-precision copy of master `index`."""
        if self.stale[index]:
            with record_function("deeprec::bf16_copy_refresh"):
                self.copies[index].copy_(self.masters[index])
            self.stale[index] = False
            self.casts += 1
        self.read[index] = True
        return self.copies[index]

    def mark_fresh(self, index: int) -> None:
        """The copy was written together with its master (kernels/mirrored_sgd.py)."""
        self.stale[index] = False

"""Hand-written AVX-512 C++ kernels, built at first use with Inductor's C++ toolchain.

torch.compile already ships a C++ compiler driver with the right flags, torch headers and
an on-disk cache; `load()` reuses it for the few loops this project writes by hand
(kernels/gather_dot.py). A kernel applies only where torch itself
runs AVX-512 code; elsewhere, or when the build fails (no compiler, another torch), `load()`
logs one warning and returns None, and the caller keeps its portable path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

Kernel = Callable[..., None]


def avx512() -> bool:
    """Whether torch runs its AVX-512 kernels on this CPU (the hand-written loops need it)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def load(name: str, argtypes: list[str], source: str) -> Kernel | None:
    """`source`'s `extern "C" void kernel(...)` as a Python callable taking tensors (for
    pointers) and numbers; None if this CPU lacks AVX-512 or the build fails."""
    if not avx512():
        return None
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache

        return CppPythonBindingsCodeCache.load_pybinding(argtypes, source)
    except Exception as exc:  # no compiler, another torch version: keep the portable path
        log.warning("%s not built (%s); using the portable path", name, exc)
        return None

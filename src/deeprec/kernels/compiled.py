"""A function compiled with torch.compile on first use, with an eager fallback.

Inductor needs a C++ compiler on the CPU (Triton on a GPU). Where compiling or running the
compiled code fails, the kernel logs one warning and every later call runs the fallback,
which computes the same values with plain PyTorch ops: slower, never wrong.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch

from deeprec.kernels.switch import enabled

log = logging.getLogger(__name__)


class CompiledKernel:
    """`kernel(*args, fallback=f)`: fn(*args) compiled, else f().

    dynamic=True compiles for any sizes at once (sizes that change every call, such as a
    batch's number of ratings); None specialises on the first sizes and recompiles for
    any size seen to change, which leaves fewer guards to check per call."""

    def __init__(
        self, fn: Callable[..., Any], name: str, dynamic: bool | None = True, *, switch: str
    ) -> None:
        self.fn = fn
        self.name = name
        self.dynamic = dynamic
        self.switch = switch  # its name in kernels.switch
        self.failed = False  # set once compiling or running the compiled code failed
        self._compiled: Callable[..., Any] | None = None

    def compiled(self) -> Callable[..., Any]:
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=self.dynamic, fullgraph=True)
        return self._compiled

    def usable(self) -> bool:
        """Whether calls try the compiled code (not failed, not switched off)."""
        return not self.failed and enabled(self.switch)

    def __call__(self, *args: Any, fallback: Callable[[], Any]) -> Any:
        if self.usable():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return self.compiled()(*args)
            except Exception as exc:  # no compiler, unsupported platform: stay correct
                self.failed = True
                log.warning("%s not compiled (%s); using eager ops", self.name, exc)
        return fallback()


@functools.lru_cache(maxsize=32)
def scalar_tensor(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`value` as a 0-d tensor for a compiled kernel's argument: a Python float would be
    baked into the compiled code (a new value recompiles). Cached: on a GPU each new tensor
    is a host-to-device copy that waits for the queued kernels."""
    return torch.tensor(value, dtype=dtype, device=device)

"""Fixtures shared by the speed tests."""

from __future__ import annotations

import pytest
import torch

from deeprec.kernels import gather_dot, mirrored_sgd, refeed_loss


@pytest.fixture
def fresh_compiled_kernels():
    """The torch.compile'd kernels as in a new process: compiler caches cleared and no
    kernel marked failed. Tests that assert a kernel compiled need this: earlier tests (in
    any order) may have used up dynamo's recompile limit on the same function, after which
    the kernel rightly falls back to eager ops."""
    kernels = (gather_dot.KERNEL, mirrored_sgd.UPDATE_KERNEL, refeed_loss.KERNEL)

    def reset() -> None:
        torch.compiler.reset()
        for kernel in kernels:
            kernel.failed = False
            kernel._compiled = None

    reset()
    yield
    reset()

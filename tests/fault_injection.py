"""Run the deeprec CLI with faults injected from outside the library (reliability tests and
benchmarks/reliability_kills.py).

    python tests/fault_injection.py [--crash-in-checkpoint N] [--batch-delay S] -- ARGS...

runs ``python -m deeprec ARGS...`` in this process after patching:

- ``--crash-in-checkpoint N``: SIGKILL this process inside its N-th checkpoint write (counting
  this process's writes), after the temporary file is complete and before the rename;
- ``--batch-delay S``: sleep S seconds after every training batch, so that a kill from outside
  lands mid-epoch.

The production code has no hooks for this: the patches wrap ``atomic_path`` as the checkpoint
module uses it and ``Checkpointer.batch_end``. If either stops being on the path a checkpoint
write or a batch takes, the crash never happens and the tests that expect it fail.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

FAULTS = Path(__file__).resolve()


def install(*, crash_in_checkpoint: int = 0, batch_delay: float = 0.0) -> None:
    """Patch deeprec.train.checkpoint in this process (0 = that fault off)."""
    from deeprec.train import checkpoint

    if crash_in_checkpoint:
        real_atomic_path = checkpoint.atomic_path
        writes = [0]

        @contextlib.contextmanager
        def crashing_atomic_path(path: str | Path) -> Iterator[Path]:
            with real_atomic_path(path) as tmp:
                yield tmp  # the checkpoint writer fills the temporary file here
                writes[0] += 1
                if writes[0] == crash_in_checkpoint:
                    os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.atomic_path = crashing_atomic_path

    if batch_delay:
        real_batch_end = checkpoint.Checkpointer.batch_end

        def slow_batch_end(self, *args, **kwargs) -> None:
            time.sleep(batch_delay)
            real_batch_end(self, *args, **kwargs)

        checkpoint.Checkpointer.batch_end = slow_batch_end


def command(
    args: list[str], *, crash_in_checkpoint: int = 0, batch_delay: float = 0.0
) -> list[str]:
    """`args` (``[python, -m, deeprec, ...]``) rewritten to run through this module."""
    if args[1:3] != ["-m", "deeprec"]:
        raise ValueError(f"expected a `python -m deeprec ...` command, got {args[:3]}")
    options = [f"--crash-in-checkpoint={crash_in_checkpoint}", f"--batch-delay={batch_delay}"]
    return [args[0], str(FAULTS), *options, "--", *args[3:]]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crash-in-checkpoint", type=int, default=0)
    parser.add_argument("--batch-delay", type=float, default=0.0)
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    # Running this file put tests/ first on sys.path; its folders must not shadow packages.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != FAULTS.parent]
    cli = options.cli[1:] if options.cli[:1] == ["--"] else options.cli
    install(crash_in_checkpoint=options.crash_in_checkpoint, batch_delay=options.batch_delay)
    sys.argv = ["deeprec", *cli]
    runpy.run_module("deeprec", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Run the deeprec CLI with faults injected from outside the library (reliability tests and
benchmarks/reliability_kills.py).

    python tests/fault_injection.py [--crash-in-checkpoint N] [--batch-delay S]
        [--fail-at RANK:STEP[:hang]] -- ARGS...

runs ``python -m deeprec ARGS...`` in this process (torchrun runs it as its script, once per
rank) after patching:

- ``--crash-in-checkpoint N``: SIGKILL this process inside its N-th checkpoint write (counting
  this process's writes), after the temporary file is complete and before the rename;
- ``--batch-delay S``: sleep S seconds after every training batch, so that a kill from outside
  lands mid-epoch;
- ``--fail-at RANK:STEP[:hang]``: under torchrun, rank RANK raises a TrainingError (or, with
  ``hang``, stops answering) at its STEP-th data-parallel step, in the job's first attempt
  only (a restarted attempt, TORCHELASTIC_RESTART_COUNT > 0, runs clean).

The production code has no hooks for this: the patches wrap ``atomic_path`` as the checkpoint
module uses it, ``Checkpointer.batch_end`` and ``DataParallel.begin_step``. If one stops being
on the path a checkpoint write, a batch or a step takes, the fault never happens and the tests
that expect it fail.
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


def parse_fail_at(raw: str) -> tuple[int, int, str]:
    """`RANK:STEP` (raise) or `RANK:STEP:hang` (stop answering)."""
    parts = raw.split(":")
    mode = parts[2] if len(parts) == 3 else "raise"
    if len(parts) not in (2, 3) or mode not in ("raise", "hang"):
        raise ValueError(f"--fail-at must be RANK:STEP[:hang], got {raw!r}")
    return int(parts[0]), int(parts[1]), mode


def install(
    *, crash_in_checkpoint: int = 0, batch_delay: float = 0.0, fail_at: str | None = None
) -> None:
    """Patch deeprec's checkpoint and data-parallel modules in this process (0 or None = that
    fault off)."""
    from deeprec.errors import TrainingError
    from deeprec.train import checkpoint, distributed

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

    if fail_at and int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) == 0:
        rank, step, mode = parse_fail_at(fail_at)
        real_begin_step = distributed.DataParallel.begin_step

        def failing_begin_step(self, batch) -> None:
            real_begin_step(self, batch)
            if (self.ctx.rank, self.steps) == (rank, step):
                if mode == "hang":  # the peers must give up by their collective timeout
                    time.sleep(24 * 3600)
                raise TrainingError(
                    f"rank {rank}: injected failure at step {step} (tests/fault_injection.py)"
                )

        distributed.DataParallel.begin_step = failing_begin_step


def options(
    *, crash_in_checkpoint: int = 0, batch_delay: float = 0.0, fail_at: str | None = None
) -> list[str]:
    """This module's command-line options for those faults."""
    found = [f"--crash-in-checkpoint={crash_in_checkpoint}", f"--batch-delay={batch_delay}"]
    return [*found, f"--fail-at={fail_at}"] if fail_at else found


def command(args: list[str], **faults) -> list[str]:
    """`args` (``[python, -m, deeprec, ...]``) rewritten to run through this module with
    `faults` (the keywords of `options`)."""
    if args[1:3] != ["-m", "deeprec"]:
        raise ValueError(f"expected a `python -m deeprec ...` command, got {args[:3]}")
    return [args[0], str(FAULTS), *options(**faults), "--", *args[3:]]


def torchrun_script(args: list[str], **faults) -> list[str]:
    """torchrun's arguments with `-m deeprec ...` rewritten to run this file as the training
    script with `faults`."""
    at = args.index("-m")
    if args[at + 1] != "deeprec":
        raise ValueError(f"expected `-m deeprec ...`, got {args[at : at + 2]}")
    return [*args[:at], str(FAULTS), *options(**faults), "--", *args[at + 2 :]]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crash-in-checkpoint", type=int, default=0)
    parser.add_argument("--batch-delay", type=float, default=0.0)
    parser.add_argument("--fail-at", default=None)
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    parsed = parser.parse_args(argv)
    # Running this file put tests/ first on sys.path; its folders must not shadow packages.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != FAULTS.parent]
    cli = parsed.cli[1:] if parsed.cli[:1] == ["--"] else parsed.cli
    install(
        crash_in_checkpoint=parsed.crash_in_checkpoint,
        batch_delay=parsed.batch_delay,
        fail_at=parsed.fail_at,
    )
    sys.argv = ["deeprec", *cli]
    runpy.run_module("deeprec", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""An exclusive lock on a run directory, held while a training writes into it.

``fcntl.flock`` on ``RUN/.lock``: the kernel drops it when the process dies (even by
SIGKILL), so a crashed run never leaves a stale lock, and a second training into the same
directory fails at once with RunLockedError naming the holder (pid, host, start time).
The lock file itself is never deleted (deleting it would let two processes lock two
different inodes).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from deeprec.errors import CheckpointError, RunLockedError

LOCK_NAME = ".lock"


class RunLock:
    """Hold ``RUN/.lock`` exclusively; use as a context manager or acquire()/release()."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"cannot create the lock file {self.path}: {os.strerror(exc.errno or 0)} "
                f"(errno {exc.errno}, {errno.errorcode.get(exc.errno or 0, '?')}); "
                "is the output directory writable?"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(
                    f"run directory {self.run_dir} is locked by another training ({holder}); "
                    "wait for it to finish, or write to another --out"
                ) from None
            raise CheckpointError(f"cannot lock {self.path}: {exc}") from exc
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError:
            pass  # the lock itself is held; the note for humans is best effort
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked_run(run_dir: str | Path) -> Iterator[RunLock]:
    with RunLock(run_dir) as lock:
        yield lock


def _read_holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        info = json.loads(raw)
        return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
    except (OSError, ValueError, AttributeError):
        return "holder unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

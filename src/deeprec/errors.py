"""The project's own error types: every failure a user can cause is one of these."""

from __future__ import annotations

from pathlib import Path


class DeepRecError(Exception):
    """Base class of every error deeprec raises on purpose (bad input, bad config, ...)."""


class DataError(DeepRecError):
    """Bad input data. The message names the file, line and field where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path if line is None else f"{self.path}:{line}")
        elif line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class DataWarning(UserWarning):
    """Suspicious but usable input (for example duplicate ratings); the data was repaired."""


class ConfigError(DeepRecError):
    """An unknown option, a value of the wrong type, or an impossible architecture."""


class CheckpointError(DeepRecError):
    """A missing, mismatched, corrupt or unsafe (pickle) model or checkpoint file."""


class TrainingError(DeepRecError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class RunLockedError(DeepRecError):
    """Another process is writing into the same run directory."""


class UnknownIdError(DataError):
    """A user or item id the model was not trained on (the HTTP service answers 404)."""

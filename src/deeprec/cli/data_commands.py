"""`deeprec prepare` and `deeprec synth`: raw files to a prepared dataset (see deeprec.data)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the data commands to the app (filled in by the data pipeline work)."""
    return None

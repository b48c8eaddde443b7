"""The `deeprec` command line: one Typer app, each command group in its own module.

The CLI stays thin: it parses options, calls the library and prints. Each module in
``COMMAND_MODULES`` exposes ``register(app)``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from deeprec.cli.messages import cli_error
from deeprec.errors import DeepRecError

COMMAND_MODULES = (
    "deeprec.cli.data_commands",
    "deeprec.cli.train_commands",
    "deeprec.cli.quickstart_commands",
    "deeprec.cli.serve_commands",
    "deeprec.cli.experiment_commands",
)

app = typer.Typer(
    name="deeprec",
    help="Deep autoencoders for explicit-rating recommendation (Kuchaiev & Ginsburg 2017).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: DeepRecError becomes a one-line message and exit status 2."""
    _register_all()
    try:
        app(args=argv, standalone_mode=False)
    except DeepRecError as exc:
        typer.echo(f"error: {cli_error(str(exc))}", err=True)
        sys.exit(2)
    except FileExistsError as exc:
        typer.echo(f"error: {cli_error(str(exc))}", err=True)
        sys.exit(2)
    except UnicodeDecodeError as exc:  # a binary file where a text file (YAML, CSV) was due
        typer.echo(
            f"error: a file given is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "check the path and --format",
            err=True,
        )
        sys.exit(2)
    except SystemExit:
        raise
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(1)
        raise

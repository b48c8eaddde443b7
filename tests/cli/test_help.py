"""Every command's --help shows its option texts verbatim (no text lost to Rich markup)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from deeprec.cli import _register_all, app


def _commands() -> list[tuple[str, object]]:
    _register_all()
    group = typer.main.get_command(app)
    return sorted(group.commands.items())


def _flat(text: str) -> str:
    return re.sub(r"[\s│]+", " ", text)


@pytest.mark.parametrize("name", [name for name, _ in _commands()])
def test_help_keeps_bracketed_text(name: str) -> None:
    command = dict(_commands())[name]
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    for help_text in texts:
        for bracketed in re.findall(r"\[[^\]]*\]", help_text.replace("\\[", "[")):
            assert bracketed in shown, f"{name}: {bracketed!r} lost from --help"


def test_tune_help_shows_the_grid_syntax() -> None:
    result = CliRunner().invoke(app, ["tune", "--help"], env={"COLUMNS": "400"})
    assert "grid: {key: [values]}" in _flat(result.output)

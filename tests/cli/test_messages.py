"""Errors on the command line: CLI syntax for options, no garbage bytes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deeprec.cli.messages import cli_error, cli_syntax, printable

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        env=env, capture_output=True, text=True, timeout=300, errors="strict",
    )  # fmt: skip


def test_python_option_suggestions_become_set_flags() -> None:
    text = "fold in new items instead, or train with orientation='user'"
    assert cli_syntax(text) == "fold in new items instead, or train with --set orientation=user"
    assert cli_syntax('use center="none"') == "use --set center=none"
    assert cli_syntax("or set dropout=0.5") == "or set --set dropout=0.5"
    # not training options: left alone
    assert cli_syntax("pass on_unknown='skip'") == "pass on_unknown='skip'"
    assert cli_syntax("got orientation='x'") == "got orientation='x'"


def test_printable_escapes_control_bytes_and_cuts() -> None:
    assert printable("a\x00b\x1bc\ufffdd") == "a\\x00b\\x1bc?d"
    assert printable("x" * 1000, limit=10) == "x" * 9 + "…"
    assert "binary" in cli_error("columns: " + "\ufffd\x01" * 50)
    assert "binary" not in cli_error("plain message")


def test_fold_in_error_on_an_item_based_run_uses_cli_syntax(tmp_path: Path) -> None:
    from deeprec import DeepRec
    from deeprec.recommend.honesty import low_rank_ratings

    frame = low_rank_ratings(40, 20, density=0.4, seed=1)
    model = DeepRec(hidden=[4], epochs=1, orientation="item").fit(frame)
    run = tmp_path / "run"
    model.save(run / "best")
    ratings = tmp_path / "me.json"
    ratings.write_text(json.dumps({str(frame.item.iloc[0]): 5}))
    proc = _run("recommend", "--run", str(run), "--ratings", str(ratings))
    assert proc.returncode == 2, proc.stderr
    assert "--set orientation=user" in proc.stderr and "orientation='user'" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_binary_inputs_give_one_clean_line(tmp_path: Path) -> None:
    garbage = bytes(range(128, 256)) * 40  # not UTF-8, no NUL bytes, no newline
    data = tmp_path / "ratings.csv"
    data.write_bytes(b"user,item,rating\n" + garbage + b"\n1,2,3\n")
    with_nul = tmp_path / "model.csv"
    with_nul.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + garbage)
    config = tmp_path / "config.yaml"
    config.write_bytes(garbage)
    for args in (
        ("prepare", str(data), "--out", str(tmp_path / "a")),
        ("prepare", str(with_nul), "--out", str(tmp_path / "b")),
        ("train", "--data", str(tmp_path), "--config", str(config), "--out", str(tmp_path / "r")),
    ):
        proc = _run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert all(ch.isprintable() for ch in proc.stderr.strip()), repr(proc.stderr)
        assert "\ufffd" not in proc.stderr
    assert "binary" in _run("prepare", str(with_nul), "--out", str(tmp_path / "c")).stderr

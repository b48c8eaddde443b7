"""`deeprec synth` and `deeprec prepare` through the real command line (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_synth_then_prepare(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "ds"
    result = _run("synth", "--preset", "tiny", "--out", str(raw), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "50,000 ratings" in result.stdout
    result = _run(
        "prepare", str(raw), "--format", "netflix", "--split", "netflix-3m", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    train = meta["splits"]["train"]
    assert f"{train['ratings']:,}" in result.stdout and "2005-09-01..2005-11-30" in result.stdout
    again = _run("prepare", str(raw), "--split", "netflix-3m", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (
        _run(
            "prepare", str(raw), "--split", "netflix-3m", "--out", str(out), "--overwrite"
        ).returncode
        == 0
    )


def test_bad_input_exit_code_and_message(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating\n1,1,3\n2,1,four\n")
    result = _run("prepare", str(tmp_path / "r.csv"), "--out", str(tmp_path / "ds"))
    assert result.returncode == 2
    assert "r.csv:3" in result.stderr and "rating" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ds").exists()
    result = _run(
        "prepare", str(tmp_path / "r.csv"), "--split", "yearly", "--out", str(tmp_path / "ds")
    )
    assert result.returncode == 2 and "unknown split 'yearly'" in result.stderr


def test_help_explains_every_option():
    text = _run("prepare", "--help").stdout
    for option in (
        "--format",
        "--split",
        "--out",
        "--seed",
        "--columns",
        "--valid-fraction",
        "--keep-unseen",
        "--rating-scale",
        "--overwrite",
        "netflix-3m",
        "time-quantile",
    ):
        assert option in text, option
    text = _run("synth", "--help").stdout
    for option in ("--preset", "--users", "--items", "--ratings", "--format", "--seed", "--out"):
        assert option in text, option

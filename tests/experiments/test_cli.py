"""The CLI wires `deeprec experiment` and `deeprec tune` to the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _deeprec(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_experiment_and_tune_commands(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "depth"
    proc = _deeprec(
        "experiment", "depth", "--data", str(tiny_dataset), "--out", str(out),
        "--epochs", "1", "--subsample", "0.5", "--seed", "3", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["experiment"] == "depth" and "runs.csv" in summary["files"]
    assert "user subsample: 0.5 (seed 3)" in (out / "results.md").read_text()
    # a non-empty folder is not silently overwritten
    again = _deeprec("experiment", "depth", "--data", str(tiny_dataset), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr

    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 1, hidden: [4]}\ngrid:\n  lr: [0.001, 0.01]\n")
    proc = _deeprec(
        "tune", "--data", str(tiny_dataset), "--out", str(tmp_path / "tune"),
        "--grid", str(grid), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 2 and summary["test_of_best_config"]["n"] > 0
    assert (tmp_path / "tune" / "best.yaml").is_file()


def test_unknown_experiment_is_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    proc = _deeprec("experiment", "nope", "--data", str(tiny_dataset), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown experiment 'nope'" in proc.stderr and "activations" in proc.stderr

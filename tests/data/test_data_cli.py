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


def test_prepare_warns_when_a_split_drops_most_held_out_ratings(tmp_path):
    """A time split whose test window holds mostly new users: more than half of the
    held-out ratings are dropped, and the warning names --keep-unseen."""
    lines = ["user,item,rating,timestamp"]
    train_items = [1, 2, 3, 4, 6, 7, 8, 9]
    lines += [f"{u},{i},{1 + (u + i) % 5},{100 + u}" for u in range(1, 21) for i in train_items]
    lines += [f"{u},5,3,{100 + u}" for u in range(5, 21)]
    lines += [f"{u},{i},3,{1000 + u}" for u in range(21, 41) for i in range(1, 6)]  # new users
    lines += [f"{u},5,4,{1000 + u}" for u in range(1, 5)]  # known users, known item
    data = tmp_path / "r.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds"
    result = _run("prepare", str(data), "--split", "time-quantile:0.5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning: the split dropped" in result.stderr and "--keep-unseen" in result.stderr
    kept = _run(
        "prepare", str(data), "--split", "time-quantile:0.5", "--keep-unseen",
        "--out", str(tmp_path / "kept"),
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert "warning: the split dropped" not in kept.stderr


def test_heldout_loss_warning_threshold():
    from deeprec.data.prepare import heldout_loss_warning

    def meta(dropped, valid, test):
        splits = {"valid": {"ratings": valid}, "test": {"ratings": test}}
        return {"dropped_unseen": {"valid": dropped, "test": 0}, "splits": splits}

    assert heldout_loss_warning(meta(50, 25, 25)) is None  # exactly half: no warning
    message = heldout_loss_warning(meta(51, 25, 24))
    assert message is not None and "51 of 100" in message and "51%" in message
    assert heldout_loss_warning(meta(0, 0, 0)) is None

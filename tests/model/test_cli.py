"""`deeprec train / evaluate / predict` as a user runs them (subprocesses, tiny synthetic data)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .model_data import split_frame, synthetic_frame

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = split_frame(synthetic_frame()).save(root / "data")
    config = root / "small.yaml"
    config.write_text("hidden: [16, 8]\nepochs: 3\nbatch_size: 16\nlr: 0.01\n")
    proc = _run(
        "train", "--data", str(data), "--config", str(config), "--set", "dropout=0.1",
        "--set", "constrained=true", "--out", str(root / "run"), "--quiet", cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "data": data, "run": root / "run", "stdout": proc.stdout}


def test_train_writes_a_complete_run_directory(trained) -> None:
    run = trained["run"]
    for name in ("config.yaml", "dataset.json", "metrics.jsonl", "summary.json", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "best" / "weights.safetensors").is_file()
    assert list((run / "checkpoints").glob("ckpt-*.safetensors"))  # RUN/last/ is now these
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for record in lines:
        assert {"epoch", "train_rmse", "valid_rmse", "epoch_seconds"} <= set(record)
    saved = (run / "config.yaml").read_text()
    assert "constrained: true" in saved and "dropout: 0.1" in saved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 3 and 0 < summary["test"]["rmse"] < 5


def test_evaluate_prints_one_json_object(trained) -> None:
    proc = _run("evaluate", "--run", str(trained["run"]), cwd=trained["root"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"rmse", "mae", "n"} <= set(result)
    summary = json.loads((trained["run"] / "summary.json").read_text())
    assert result["rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-12)
    assert result["n"] == summary["test"]["n"]
    valid = json.loads(_run("evaluate", "--run", str(trained["run"]), "--split", "valid",
                            cwd=trained["root"]).stdout)  # fmt: skip
    assert valid["split"] == "valid" and valid["n"] != result["n"]


def test_predict_writes_raw_id_predictions(trained) -> None:
    root = trained["root"]
    pairs = root / "pairs.csv"
    pairs.write_text("user,item,rating\n100,5,3\n107,8,4\n123456,5,2\n")
    out = root / "pred.csv"
    proc = _run("predict", "--run", str(trained["run"]), "--pairs", str(pairs), "--out", str(out),
                cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["user"] for r in rows] == ["100", "107", "123456"]
    assert list(rows[0]) == ["user", "item", "prediction", "rating", "known"]
    assert all(1.0 <= float(r["prediction"]) <= 5.0 for r in rows)
    # user 123456 is unknown: marked in the output and counted in a warning
    assert [r["known"] for r in rows] == ["true", "true", "false"]
    assert "warning: 1 of 3 pairs" in proc.stderr and "1 unknown user(s)" in proc.stderr
    assert "training mean" in proc.stderr


def test_predict_unknown_modes(trained) -> None:
    root = trained["root"]
    pairs = root / "pairs2.csv"
    pairs.write_text("user,item\n100,5\n100,999999\n")
    out = root / "pred2.csv"
    args = ("predict", "--run", str(trained["run"]), "--pairs", str(pairs), "--out", str(out))
    proc = _run(*args, "--unknown", "empty", cwd=root)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert rows[1]["prediction"] == "" and rows[1]["known"] == "false"
    assert "1 unknown item(s)" in proc.stderr and "left empty" in proc.stderr
    proc = _run(*args, "--unknown", "error", cwd=root)
    assert proc.returncode == 2 and "unknown user or item at position 1" in proc.stderr
    known_only = root / "pairs3.csv"
    known_only.write_text("user,item\n100,5\n")
    proc = _run("predict", "--run", str(trained["run"]), "--pairs", str(known_only),
                "--out", str(out), cwd=root)  # fmt: skip
    assert proc.returncode == 0 and "warning" not in proc.stderr


def test_cli_errors_are_one_clear_line(trained, tmp_path) -> None:
    proc = _run("evaluate", "--run", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "no best/ model" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run("train", "--data", str(trained["data"]), "--out", str(tmp_path / "r"),
                "--set", "hiden=[4]", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "unknown option" in proc.stderr
    proc = _run("train", "--data", str(trained["data"]), "--out", str(tmp_path / "r2"),
                "--set", "hidden=[0]", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "hidden" in proc.stderr


def test_train_says_how_it_ended_and_where_things_are(trained, tmp_path) -> None:
    text = trained["stdout"]
    assert "trained all 3 epochs" in text
    assert "best epoch" in text and "that model is kept" in text
    run = trained["run"]
    assert f"model: {run / 'best'}" in text and f"curves: {run / 'curves.png'}" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] is False and summary["curves"] == str(run / "curves.png")
    # a run that stops early says so and names the option (lr 1e-30: weights never change)
    config = trained["root"] / "stop.yaml"
    config.write_text("hidden: [4]\nepochs: 30\nbatch_size: 16\nlr: 1.0e-30\nearly_stopping: 1\n")
    proc = _run("train", "--data", str(trained["data"]), "--config", str(config),
                "--out", str(tmp_path / "r"), "-q", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "stopped early after epoch 2 of 30" in proc.stdout and "(early_stopping)" in proc.stdout

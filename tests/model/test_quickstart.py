"""`deeprec quickstart` end to end at a tiny size (the default size takes a few minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeprec.ensemble import load_ensemble_preset
from deeprec.errors import ConfigError
from deeprec.presets import is_ensemble_preset, load_preset, preset_names, preset_text

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_every_stage_at_a_tiny_size(tmp_path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", "quickstart", "--out", str(out), "--users", "300",
         "--items", "60", "--ratings", "9000", "--set", "epochs=2", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert stage in text
    assert "netflix-3m" in text
    assert "2005-09-01..2005-11-30" in text  # Table 1: the 3M training window
    assert "test RMSE" in text and "predictions for user" in text
    assert text.count("predicted") >= 1
    assert (out / "run" / "best" / "model.json").is_file()
    assert (out / "data" / "meta.json").is_file()
    (out / "raw" / "stale.txt").write_text("from the first run")
    # the README's command run again: the previous quickstart output is replaced
    again = subprocess.run(
        [sys.executable, "-m", "deeprec", "quickstart", "--out", str(out), "--users", "300",
         "--items", "60", "--ratings", "9000", "--set", "epochs=2", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "replacing the previous quickstart output" in again.stdout
    assert (out / "run" / "best" / "model.json").is_file()
    assert not (out / "raw" / "stale.txt").exists()  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]  # nothing left aside
    # any other non-empty folder is still refused without --overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = subprocess.run(
        [sys.executable, "-m", "deeprec", "quickstart", "--out", str(other), "--users", "300"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_failed_rerun_restores_the_previous_output(tmp_path, monkeypatch) -> None:
    from deeprec import quickstart as qs

    out = tmp_path / "qs"
    (out / "data").mkdir(parents=True)
    (out / "data" / "meta.json").write_text("{}")  # an earlier quickstart's layout
    (out / qs.MARKER).write_text("")

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(qs, "_run_stages", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        qs.run_quickstart(out, echo=lambda _m: None)
    assert (out / "data" / "meta.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]


def test_packaged_presets_equal_the_repository_configs() -> None:
    names = preset_names()
    assert "quickstart" in names
    for name in names:
        assert preset_text(name) == (ROOT / "configs" / f"{name}.yaml").read_text(), name
        if is_ensemble_preset(name):
            assert load_ensemble_preset(name)["members"], name
            with pytest.raises(ConfigError, match="ensemble"):
                load_preset(name)
        else:
            load_preset(name)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("nope")
